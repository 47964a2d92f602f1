use std::fmt;

/// Length of an execution id in characters.
pub const ID_LEN: usize = 8;
/// Shortest prefix accepted in place of a full id.
pub const MIN_PREFIX_LEN: usize = 4;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// An execution's id: 8 lowercase base36 characters, random, so that ids
/// are short enough to type and need no coordination between processes.
/// Uniqueness is the ledger's job (it retries on collision).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, example = "k3x9q2ab")]
pub struct ExecutionId(String);

/// Why a string is not an execution id or id prefix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Too short to be a prefix, or longer than an id.
    #[error("'{0}' is not an execution id: ids are {ID_LEN} characters and a prefix needs at least {MIN_PREFIX_LEN}")]
    Length(String),
    /// Contains something other than `0-9a-z`.
    #[error("'{0}' is not an execution id: ids use only the characters 0-9 and a-z")]
    Charset(String),
}

impl ExecutionId {
    /// Builds an id from random bits; 36^8 ≈ 2.8e12 values, so collisions
    /// are rare but possible, and the ledger detects them.
    pub fn from_random(mut bits: u64) -> Self {
        let mut s = String::with_capacity(ID_LEN);
        for _ in 0..ID_LEN {
            s.push(ALPHABET[(bits % 36) as usize] as char);
            bits /= 36;
        }
        ExecutionId(s)
    }

    /// Parses a full id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_chars(s)?;
        if s.len() != ID_LEN {
            return Err(IdError::Length(s.to_string()));
        }
        Ok(ExecutionId(s.to_string()))
    }

    /// Checks that `s` can be a prefix of an id (4 to 8 base36 characters),
    /// so that nothing else ever reaches a query.
    pub fn check_prefix(s: &str) -> Result<&str, IdError> {
        check_chars(s)?;
        if s.len() < MIN_PREFIX_LEN || s.len() > ID_LEN {
            return Err(IdError::Length(s.to_string()));
        }
        Ok(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_chars(s: &str) -> Result<(), IdError> {
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        Ok(())
    } else {
        Err(IdError::Charset(s.to_string()))
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ExecutionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ExecutionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ExecutionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_eight_base36_chars() {
        for bits in [0u64, 1, u64::MAX, 0xdead_beef_cafe] {
            let id = ExecutionId::from_random(bits);
            assert_eq!(id.as_str().len(), ID_LEN);
            assert!(ExecutionId::parse(id.as_str()).is_ok());
        }
        assert_ne!(ExecutionId::from_random(1), ExecutionId::from_random(2));
    }

    #[test]
    fn prefixes_need_four_to_eight_base36_chars() {
        assert!(ExecutionId::check_prefix("abcd").is_ok());
        assert!(ExecutionId::check_prefix("abc").is_err());
        assert!(ExecutionId::check_prefix("abcdefghi").is_err());
        assert_eq!(
            ExecutionId::check_prefix("ab/d"),
            Err(IdError::Charset("ab/d".into()))
        );
        assert!(ExecutionId::check_prefix("ABCD").is_err());
        assert!(ExecutionId::check_prefix("ab%_").is_err());
    }
}
