//! Hashers for map keys this process makes itself, where std's SipHash (built for keys
//! an attacker picks) costs several times more on a per-job path: `Fnv` for short
//! names (job classes), `Ids` for the dispatcher's sequential job ids.

use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a over the key's bytes.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type BuildFnv = BuildHasherDefault<Fnv>;

/// One multiplication per id (Fibonacci hashing: consecutive ids spread over the high
/// bits hashbrown reads). Insert, lookup and removal of a job's id with SipHash cost
/// ~280 instructions a job.
#[derive(Default)]
pub struct Ids(u64);

impl Hasher for Ids {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0 ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type BuildIds = BuildHasherDefault<Ids>;
