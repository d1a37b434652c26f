//! The two names every job carries from its parse to its end — its class and its jid —
//! in forms that cost no allocation per job: a class name shared among the jobs of the
//! class (`ClassName`), and a jid kept inline (`Jid`). A no-op job used to allocate and
//! free each of them twice (the parse, then the copy handed to Ruby and the one counted
//! by the metrics): ~1,000 instructions of its ~6,000 in the engine.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A job class's name, shared: a clone is a reference count, not a copy.
pub type ClassName = Arc<str>;

/// Class names a thread keeps to share (the most recently parsed first).
const RECENT_CLASSES: usize = 8;

thread_local! {
    static RECENT: RefCell<Vec<ClassName>> = const { RefCell::new(Vec::new()) };
}

/// The shared name for `name`: one of the names this thread parsed recently (jobs of a
/// queue are mostly of a few classes), else a new one, which it then keeps.
pub fn class_name(name: &str) -> ClassName {
    RECENT.with(|recent| {
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return ClassName::from(name);
        };
        if let Some(i) = recent.iter().position(|c| &**c == name) {
            if i != 0 {
                recent[..=i].rotate_right(1);
            }
            return recent[0].clone();
        }
        let made = ClassName::from(name);
        if recent.len() == RECENT_CLASSES {
            recent.pop();
        }
        recent.insert(0, made.clone());
        made
    })
}

/// Bytes of a jid kept inline: FiberJob's and Sidekiq's are 24 hex digits.
const INLINE: usize = 30;

/// A job id. Up to 30 bytes it lives inline (a clone is a copy of 32 bytes); a longer
/// one, which only another client could have written, is boxed.
#[derive(Clone, PartialEq, Eq)]
pub enum Jid {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl Jid {
    pub fn new(jid: &str) -> Jid {
        if jid.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..jid.len()].copy_from_slice(jid.as_bytes());
            Jid::Inline {
                len: jid.len() as u8,
                bytes,
            }
        } else {
            Jid::Boxed(jid.into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Jid::Inline { len, bytes } => {
                // SAFETY: the first `len` bytes are a copy of a whole `&str` (`new`).
                unsafe { std::str::from_utf8_unchecked(&bytes[..usize::from(*len)]) }
            }
            Jid::Boxed(s) => s,
        }
    }
}

impl Default for Jid {
    fn default() -> Jid {
        Jid::new("")
    }
}

impl Deref for Jid {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Jid {
    fn from(jid: &str) -> Jid {
        Jid::new(jid)
    }
}

impl PartialEq<str> for Jid {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Jid {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids_inline_and_boxed_read_back() {
        for jid in [
            "",
            "a",
            "0123456789abcdef01234567",
            &"x".repeat(30),
            &"é".repeat(15),
            &"y".repeat(31),
            &"z".repeat(200),
        ] {
            let j = Jid::new(jid);
            assert_eq!(j.as_str(), jid);
            assert_eq!(
                matches!(j, Jid::Inline { .. }),
                jid.len() <= INLINE,
                "{jid}"
            );
            assert_eq!(j.clone(), j);
            assert_eq!(format!("{j}"), jid);
        }
        assert_ne!(Jid::new("ab"), Jid::new("abc"));
    }

    #[test]
    fn class_names_are_shared_among_recent_ones() {
        let a = class_name("RecentA");
        assert!(Arc::ptr_eq(&a, &class_name("RecentA")));
        // More classes than a thread keeps: the oldest is made anew, equal in value.
        for i in 0..RECENT_CLASSES {
            class_name(&format!("Other{i}"));
        }
        let again = class_name("RecentA");
        assert!(!Arc::ptr_eq(&a, &again));
        assert_eq!(&*again, "RecentA");
        // A name used again moves to the front and stays.
        for i in 0..RECENT_CLASSES - 1 {
            assert!(Arc::ptr_eq(&again, &class_name("RecentA")));
            class_name(&format!("More{i}"));
        }
        assert!(Arc::ptr_eq(&again, &class_name("RecentA")));
    }
}
