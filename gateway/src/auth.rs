//! Password hashes for session and API credentials: PBKDF2-HMAC-SHA256 with a per-user salt.
//!
//! Configuration holds only `pbkdf2-sha256$<rounds>$<salt hex>$<hash hex>`; the password itself
//! is never stored. `exchange hash-password` prints a hash for a password.

use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;

/// A session's credential check that remembers its latest answers, so that a logon checked
/// ahead of time (off the event loop, see the acceptor) is not hashed a second time under the
/// session's lock. Answers are keyed by SHA-256 of the salt and the password, never the
/// password itself.
pub struct CredentialCheck {
    user: String,
    hash: PasswordHash,
    recent: std::sync::Mutex<Vec<([u8; 32], bool)>>,
}

/// Answers a [`CredentialCheck`] remembers.
const REMEMBERED: usize = 8;

impl CredentialCheck {
    /// A check of `user` against a password hash.
    pub fn new(user: String, hash: PasswordHash) -> CredentialCheck {
        CredentialCheck {
            user,
            hash,
            recent: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether the username and password are right.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        use sha2::Digest;
        if user != self.user {
            return false;
        }
        let mut d = Sha256::new();
        d.update(&self.hash.salt);
        d.update(password.as_bytes());
        let key: [u8; 32] = d.finalize().into();
        let recent = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ok)) = recent().iter().find(|(k, _)| *k == key) {
            return *ok;
        }
        let ok = self.hash.verify(password);
        let mut r = recent();
        if r.len() == REMEMBERED {
            r.remove(0);
        }
        r.push((key, ok));
        ok
    }
}

/// Rounds used for new hashes.
pub const DEFAULT_ROUNDS: u32 = 100_000;

/// A parsed password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    rounds: u32,
    salt: Vec<u8>,
    hash: [u8; 32],
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl PasswordHash {
    /// Hashes a password with a salt.
    pub fn new(password: &str, salt: &[u8], rounds: u32) -> PasswordHash {
        let mut hash = [0u8; 32];
        pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, rounds, &mut hash);
        PasswordHash {
            rounds,
            salt: salt.to_vec(),
            hash,
        }
    }

    /// Parses the configuration form.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let parts: Vec<&str> = s.split('$').collect();
        let [scheme, rounds, salt, hash] = parts[..] else {
            return Err("password hash must look like pbkdf2-sha256$ROUNDS$SALT$HASH".into());
        };
        if scheme != "pbkdf2-sha256" {
            return Err(format!("unsupported password hash scheme {scheme:?}"));
        }
        let rounds: u32 = rounds
            .parse()
            .map_err(|_| format!("bad round count {rounds:?}"))?;
        if rounds == 0 {
            return Err("round count must be positive".into());
        }
        let salt = unhex(salt).ok_or("salt is not hex")?;
        let hash: [u8; 32] = unhex(hash)
            .and_then(|h| h.try_into().ok())
            .ok_or("hash is not 32 bytes of hex")?;
        Ok(PasswordHash { rounds, salt, hash })
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let other = PasswordHash::new(password, &self.salt, self.rounds);
        other
            .hash
            .iter()
            .zip(self.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pbkdf2-sha256${}${}${}",
            self.rounds,
            hex(&self.salt),
            hex(&self.hash)
        )
    }
}

/// The hash of an HTTP API key: `sha256$HEX`. Keys are long random strings, so a fast hash
/// is enough (a slow one would tax every request) while the configuration still never holds
/// the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyHash([u8; 32]);

impl ApiKeyHash {
    /// The hash of a key.
    pub fn of(key: &str) -> ApiKeyHash {
        use sha2::Digest;
        ApiKeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// Parses the configuration form.
    pub fn parse(s: &str) -> Result<ApiKeyHash, String> {
        let hex = s
            .strip_prefix("sha256$")
            .ok_or("API key hash must look like sha256$HEX")?;
        unhex(hex)
            .and_then(|h| h.try_into().ok())
            .map(ApiKeyHash)
            .ok_or_else(|| "API key hash is not 32 bytes of hex".into())
    }

    /// Whether `key` matches, compared in constant time.
    pub fn verify(&self, key: &str) -> bool {
        ApiKeyHash::of(key)
            .0
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Display for ApiKeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256${}", hex(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_hashes_round_trip_and_verify() {
        let h = ApiKeyHash::of("k-123");
        assert_eq!(ApiKeyHash::parse(&h.to_string()).unwrap(), h);
        assert!(h.verify("k-123"));
        assert!(!h.verify("k-124"));
        assert!(ApiKeyHash::parse("sha256$00").is_err());
        assert!(ApiKeyHash::parse("k-123").is_err());
    }

    /// Remembered answers are the real ones, for right and wrong passwords alike, and a
    /// password that was never checked (or was forgotten) is hashed again.
    #[test]
    fn credential_checks_remember_their_answers() {
        let c = CredentialCheck::new("alice".into(), PasswordHash::new("pw", b"salt", 100));
        for _ in 0..2 {
            assert!(c.verify("alice", "pw"));
            assert!(!c.verify("alice", "pw2"));
            assert!(!c.verify("bob", "pw"));
        }
        for i in 0..REMEMBERED {
            assert!(!c.verify("alice", &format!("wrong{i}")));
        }
        assert!(c.recent.lock().unwrap().iter().all(|(_, ok)| !ok));
        assert!(c.verify("alice", "pw"), "forgotten, hashed again");
        assert!(!c.verify("alice", ""));
    }

    #[test]
    fn hash_round_trips_and_verifies() {
        let h = PasswordHash::new("s3cret", b"pepper-salt", 1000);
        let parsed = PasswordHash::parse(&h.to_string()).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify("s3cret"));
        assert!(!parsed.verify("s3cret "));
        assert!(!parsed.verify(""));
        assert!(PasswordHash::parse("plain").is_err());
        assert!(PasswordHash::parse("md5$1$00$00").is_err());
    }

    #[test]
    fn matches_the_rfc_test_vector() {
        // PBKDF2-HMAC-SHA256, P="password", S="salt", c=1 (RFC 7914 section 11 family).
        let h = PasswordHash::new("password", b"salt", 1);
        assert_eq!(
            hex(&h.hash),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
    }
}
