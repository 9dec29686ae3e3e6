//! Credentials and request signing for Binance's signed (`TRADE`, `USER_DATA`) endpoints.
//!
//! Binance signs the request's parameters exactly as sent: the query string (and the body, if
//! any, appended to it) is the HMAC-SHA256 message, the API secret is the key, and the lower-case
//! hex digest goes last as `signature=`. The API key travels in the `X-MBX-APIKEY` header.
//!
//! The key and the secret come from environment variables only. Neither is ever printed:
//! [`Credentials`] has a redacting `Debug`, and the secret is kept only as an HMAC key.

use std::fmt;

use ring::hmac;

/// An API key and the HMAC key made from its secret.
pub struct Credentials {
    api_key: String,
    key: hmac::Key,
}

/// Why credentials could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The variable is unset or not valid UTF-8.
    #[error("environment variable {0} is not set (it must hold the Binance API {1})")]
    Missing(String, &'static str),
    /// The variable is set but empty or holds whitespace.
    #[error("environment variable {0} is empty or contains whitespace (it must hold the Binance API {1})")]
    Malformed(String, &'static str),
}

impl Credentials {
    /// Credentials from an API key and secret.
    #[must_use]
    pub fn new(api_key: &str, secret: &str) -> Self {
        Self {
            api_key: api_key.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        }
    }

    /// Reads the key and the secret from the named environment variables.
    ///
    /// # Errors
    /// [`CredentialError`] naming the variable (never its value) if either is unset or blank.
    pub fn from_env(key_var: &str, secret_var: &str) -> Result<Self, CredentialError> {
        let read = |var: &str, what: &'static str| -> Result<String, CredentialError> {
            let value =
                std::env::var(var).map_err(|_| CredentialError::Missing(var.to_owned(), what))?;
            if value.is_empty() || value.chars().any(char::is_whitespace) {
                return Err(CredentialError::Malformed(var.to_owned(), what));
            }
            Ok(value)
        };
        let key = read(key_var, "key")?;
        let secret = read(secret_var, "secret")?;
        Ok(Self::new(&key, &secret))
    }

    /// The API key, for the `X-MBX-APIKEY` header only.
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Lower-case hex HMAC-SHA256 of `payload` (the exact parameter string sent).
    #[must_use]
    pub fn sign(&self, payload: &str) -> String {
        let tag = hmac::sign(&self.key, payload.as_bytes());
        hex(tag.as_ref())
    }

    /// `true` if `signature` is this key's signature of `payload` (constant time).
    #[must_use]
    pub fn verify(&self, payload: &str, signature: &str) -> bool {
        let Some(raw) = unhex(signature) else {
            return false;
        };
        hmac::verify(&self.key, payload.as_bytes(), &raw).is_ok()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { api_key: <redacted>, secret: <redacted> }")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's documented HMAC example (spot REST API, "SIGNED endpoint examples for POST
    /// /api/v3/order").
    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const DOC_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const DOC_PARAMS: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const DOC_SIGNATURE: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";

    #[test]
    fn signs_binance_documented_example() {
        let c = Credentials::new(DOC_KEY, DOC_SECRET);
        assert_eq!(c.sign(DOC_PARAMS), DOC_SIGNATURE);
        assert!(c.verify(DOC_PARAMS, DOC_SIGNATURE));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let c = Credentials::new(DOC_KEY, DOC_SECRET);
        assert!(!c.verify(&DOC_PARAMS.replace("price=0.1", "price=0.2"), DOC_SIGNATURE));
        assert!(!c.verify(DOC_PARAMS, &DOC_SIGNATURE.replace('c', "d")));
        assert!(!c.verify(DOC_PARAMS, "zz"));
        assert!(!c.verify(DOC_PARAMS, "abc"));
        let other = Credentials::new(DOC_KEY, "another-secret");
        assert!(!other.verify(DOC_PARAMS, DOC_SIGNATURE));
    }

    #[test]
    fn debug_never_shows_the_key_or_secret() {
        let shown = format!("{:?}", Credentials::new(DOC_KEY, DOC_SECRET));
        assert!(!shown.contains(DOC_KEY) && !shown.contains(DOC_SECRET));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn env_errors_name_the_variable_not_the_value() {
        let missing = Credentials::from_env(
            "TRADELOOP_TEST_SURELY_UNSET_KEY",
            "TRADELOOP_TEST_SURELY_UNSET_SECRET",
        )
        .unwrap_err();
        assert_eq!(
            missing,
            CredentialError::Missing("TRADELOOP_TEST_SURELY_UNSET_KEY".into(), "key")
        );
        assert!(missing
            .to_string()
            .contains("TRADELOOP_TEST_SURELY_UNSET_KEY"));
    }
}
