//! `signature.v2`: RSA over the SHA-256 of the inner tars.

use rsa::pss::Pss;
use sha2::Sha256;

use crate::{PrivateKey, PublicKey, SignError};

/// The padding a `signature.v2` was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// RSASSA-PSS, MGF1-SHA256 (what the original and stx-patch sign with).
    Pss,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (what OpenSSL-made detached signatures use).
    Pkcs1v15,
}

/// Signs the SHA-256 of the inner tars with RSASSA-PSS, MGF1-SHA256, salt 32 bytes — the same
/// as pycryptodome's `PKCS1_PSS.new(key).sign(SHA256.new(data))` in the original.
pub fn sign_v2(key: &PrivateKey, sha256: &[u8; 32]) -> Result<Vec<u8>, SignError> {
    key.inner
        .pss_sign_prehash::<Sha256>(sha256)
        .map_err(|e| SignError::Rsa {
            op: "PSS signing",
            reason: e.to_string(),
        })
}

/// Signs with PKCS#1 v1.5 (as `openssl dgst -sha256 -sign` does). stx-patch never writes these;
/// it exists so tests and tools can produce the second form the verifier must accept.
pub fn sign_v2_pkcs1v15(key: &PrivateKey, sha256: &[u8; 32]) -> Result<Vec<u8>, SignError> {
    key.inner
        .pkcs1v15_sign_prehash::<Sha256>(sha256)
        .map_err(|e| SignError::Rsa {
            op: "PKCS#1 v1.5 signing",
            reason: e.to_string(),
        })
}

/// Verifies a `signature.v2` with one key: PSS first (salt length detected, so both the
/// original's 32-byte salt and OpenSSL's maximum salt verify), then PKCS#1 v1.5.
pub fn verify_v2_with(
    key: &PublicKey,
    sha256: &[u8; 32],
    signature: &[u8],
) -> Option<SignatureScheme> {
    let pss = Pss::<Sha256> {
        salt_len: None,
        ..Pss::new()
    };
    if key.inner.verify(pss, sha256, signature).is_ok() {
        return Some(SignatureScheme::Pss);
    }
    if key
        .inner
        .pkcs1v15_verify_prehash::<Sha256>(sha256, signature)
        .is_ok()
    {
        return Some(SignatureScheme::Pkcs1v15);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;
    use sha2::Digest;

    #[test]
    fn pss_and_pkcs1v15_both_verify() {
        let key = test_key();
        let digest: [u8; 32] = Sha256::digest(b"metadata.tar+software.tar").into();
        let pss = sign_v2(key, &digest).unwrap();
        assert_eq!(pss.len(), 256);
        let v15 = sign_v2_pkcs1v15(key, &digest).unwrap();
        let public = key.public_key();
        assert_eq!(
            verify_v2_with(&public, &digest, &pss),
            Some(SignatureScheme::Pss)
        );
        assert_eq!(
            verify_v2_with(&public, &digest, &v15),
            Some(SignatureScheme::Pkcs1v15)
        );

        let mut other = digest;
        other[0] ^= 1;
        assert_eq!(verify_v2_with(&public, &other, &pss), None);
        let mut bad = pss.clone();
        bad[100] ^= 0x40;
        assert_eq!(verify_v2_with(&public, &digest, &bad), None);
        assert_eq!(verify_v2_with(&public, &digest, &[]), None);
        assert_eq!(verify_v2_with(&public, &digest, &[0u8; 512]), None);
    }

    #[test]
    fn pss_uses_a_32_byte_salt() {
        // Verification pinned to salt 32 (what the original's verifier checks) must pass.
        let key = test_key();
        let digest: [u8; 32] = Sha256::digest(b"x").into();
        let sig = sign_v2(key, &digest).unwrap();
        key.public_key()
            .inner
            .verify(Pss::<Sha256>::new_with_salt(32), &digest, &sig)
            .unwrap();
    }
}
