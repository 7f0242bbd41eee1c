//! Key files: the hub's Ed25519 signing key and one-time secrets.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use shared::signing::SigningKey;

pub const HUB_KEY_FILE: &str = "hub.key";

/// Loads the hub's signing key, making it (mode 0600) on first use.
pub fn load_or_create_hub_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = data_dir.join(HUB_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(SigningKey::from_pkcs8(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = SigningKey::generate()?;
            write_private(&path, key.pkcs8())?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a secret readable by its owner only; refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A random secret with a recognisable prefix, and its SHA-256 for storage.
pub fn new_secret(prefix: &str) -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let secret = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_secret(&secret);
    Ok((secret, hash))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}
