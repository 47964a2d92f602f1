-- Version 3: a working directory that is not UTF-8 is kept byte for byte.
-- `cwd` holds its escaped text (invalid bytes as \xNN) for SQL readers;
-- `cwd_bytes` holds the exact bytes, and only for such a directory.
ALTER TABLE executions ADD COLUMN cwd_bytes BLOB;
