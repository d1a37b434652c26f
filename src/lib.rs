//! FiberJob's engine: a Rust core on tokio under a thin Ruby API.
//!
//! Core modules are plain Rust (tested with `cargo test`); `ruby/` alone touches magnus.

pub mod ack;
pub mod admin;
pub mod cancel;
pub mod client;
pub mod cron;
pub mod direct;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod keys;
pub mod log;
pub mod outage;
pub mod payload;
pub mod reaper;
pub mod runtime;
pub mod schedule;
pub mod scripts;

mod ruby;

/// A Redis URL with its password replaced by `***`, for messages and logs.
pub fn mask_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => format!("{}***{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_passwords() {
        assert_eq!(
            super::mask_password("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(super::mask_password("redis://secret@h"), "redis://***@h");
        assert_eq!(super::mask_password("redis://h:6379"), "redis://h:6379");
    }
}
