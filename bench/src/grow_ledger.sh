#!/usr/bin/env bash
# Grows a ledger that tend created to ROWS executions, RUNNING of them live.
#
# usage: grow_ledger.sh DB TEMPLATE_ID LIVE_ID ROWS RUNNING
#
# TEMPLATE_ID is a finished execution (from `tend run -- true`) and LIVE_ID
# a running one (`tend run -d -- sleep 600`) whose supervisor stays alive.
# Every new row copies every column of one of them (so the column shape is
# exactly what tend writes, whatever migrations added): one row in
# ROWS/RUNNING copies LIVE_ID -- the same living supervisor identity
# (sup_boot_id, sup_pid, sup_start_time, sup_pidfd_ino), command identity and
# host, so reconciling finds its supervisor alive and does not mark it lost --
# and the others copy TEMPLATE_ID. Only id, created_at, started_at,
# finished_at and the log paths are new: ids are unique 8-character
# lowercase base36 strings (an affine bijection of the row number modulo
# 36^8), and created_at goes back 2 s per row from the templates' time.
set -euo pipefail
db=$1 tmpl=$2 live=$3 rows=$4 running=$5
every=$(( rows / running ))
cols=$(sqlite3 "$db" "SELECT group_concat(name, ' ') FROM pragma_table_info('executions')")
digits=""
for k in 7 6 5 4 3 2 1 0; do
    digits+="${digits:+ || }substr('0123456789abcdefghijklmnopqrstuvwxyz', (s.v / $((36**k))) % 36 + 1, 1)"
done
select=""
for c in $cols; do
    case $c in
        id) e="$digits" ;;
        created_at) e="t.created_at - (s.n * 2000)" ;;
        started_at) e="t.created_at - (s.n * 2000) + 15" ;;
        finished_at) e="CASE WHEN s.n % $every = 0 THEN NULL ELSE t.created_at - (s.n * 2000) + 1015 END" ;;
        stdout_path | stderr_path)
            e="replace(CASE WHEN s.n % $every = 0 THEN l.$c ELSE t.$c END, CASE WHEN s.n % $every = 0 THEN l.id ELSE t.id END, $digits)" ;;
        *) e="CASE WHEN s.n % $every = 0 THEN l.$c ELSE t.$c END" ;;
    esac
    select+="${select:+, }$e"
done
sqlite3 "$db" <<SQL
PRAGMA busy_timeout = 30000;
BEGIN IMMEDIATE;
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < $((rows - 2))),
     s AS (SELECT n, (n * 1103515245 + 12345) % $((36**8)) AS v FROM seq)
INSERT INTO executions ($(echo "$cols" | tr ' ' ','))
SELECT $select
FROM s, (SELECT * FROM executions WHERE id = '$tmpl') AS t, (SELECT * FROM executions WHERE id = '$live') AS l;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
