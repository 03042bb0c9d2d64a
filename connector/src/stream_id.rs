//! Stream identity: how a feeder names the stream of one input file.

use sha2::{Digest, Sha256};

/// The stream id of a stream named `name`: the first 8 bytes of the
/// SHA-256 of the name, read as a big-endian `u64`, as the original feeder
/// computed it (`int(sha256(name).hexdigest()[:16], 16)`).
pub fn stream_id_for(name: &[u8]) -> u64 {
    let digest = Sha256::digest(name);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_original_feeders_id_for_its_default_path() {
        assert_eq!(
            stream_id_for(b"/tmp/input-file.A.txt"),
            0x26a1_f88b_80d2_ec70
        );
        assert_eq!(
            stream_id_for(b"/tmp/input-file.A.txt"),
            2_783_779_322_737_126_512
        );
    }
}
