//! The direct enqueue path. A push made while no other push of this process is in
//! flight is written on a blocking TCP connection owned by the calling thread, and its
//! replies are read there: one round trip, with no hop to a tokio thread and back
//! (which costs more than the round trip itself on loopback). Concurrent pushes take
//! the shared multiplexed connection instead, where they share pipelined round trips.
//!
//! Two steps, so the common case never releases the GVL (releasing and taking it back
//! costs as much as the round trip): `push_quick`, with the GVL held, writes the
//! request and waits at most `SPIN` for the replies; only when they are not there yet
//! (or no connection exists) does `push` finish the job without the GVL, where it may
//! wait up to `network_timeout`, in slices of `SLICE` between which it looks for
//! interrupts: Ctrl-C ends the wait; a signal trap runs and the wait goes on (the
//! request was written: pushing again would store the jobs twice).
//!
//! The push is `SADD queues` (the queue's name, bookkeeping) then one `LPUSH` of every
//! payload: the jobs are stored together or not at all, and the LPUSH's reply alone says
//! which. (A `MULTI` around both would cost a fifth of the rate of concurrent pushes.)
//!
//! Over TCP, plain or TLS (rustls, configured as the shared connection is), to the
//! server the target's route names (`runtime/route.rs`: a Sentinel master is the current
//! one; a route of an older generation is never used). Anything unexpected — a connect or I/O error, a timeout,
//! a refused transaction (so nothing was written) — sends the caller to the shared
//! path, which retries until `network_timeout` and reports errors as always. The
//! connection is per thread and per process (a forked child makes its own).
//!
//! (Over 400 lines with its tests: the connection, the two steps and the bit of RESP
//! they speak are one mechanism, and read best together.)

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use std::sync::Arc;

use rustls::{ClientConnection, StreamOwned};

use crate::runtime::cancel::Cancel;
use crate::runtime::route::Route;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How long `push_quick` waits for replies while holding the GVL. A loopback round trip
/// takes ~30 µs here; a longer wait goes on without the GVL.
const SPIN: Duration = Duration::from_micros(300);

/// How long one read of the slow step waits before it looks for interrupts.
const SLICE: Duration = Duration::from_millis(10);

/// The thread that pushed last, and when (µs since `EPOCH`). The quick step holds the
/// GVL, so threads that push concurrently would each look alone and take turns; a push
/// less than `SHARED_WINDOW` after another thread's goes to the shared connection
/// instead, where concurrent pushes share pipelined round trips.
static LAST_THREAD: AtomicU64 = AtomicU64::new(0);
static LAST_AT: AtomicU64 = AtomicU64::new(0);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
const SHARED_WINDOW_MICROS: u64 = 10_000;

thread_local! {
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// Counts a push in flight for as long as it lives.
pub struct InFlightPush {
    alone: bool,
}

impl InFlightPush {
    pub fn start() -> InFlightPush {
        let me = THREAD.with(|t| *t);
        let now = EPOCH.elapsed().as_micros() as u64;
        let last = LAST_THREAD.swap(me, Ordering::AcqRel);
        let last_at = LAST_AT.swap(now, Ordering::AcqRel);
        let company = last != me && last != 0 && now.saturating_sub(last_at) < SHARED_WINDOW_MICROS;
        InFlightPush {
            alone: IN_FLIGHT.fetch_add(1, Ordering::AcqRel) == 0 && !company,
        }
    }

    /// No other push was in flight when this one started.
    pub fn alone(&self) -> bool {
        self.alone
    }
}

impl Drop for InFlightPush {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Direct {
    route: Arc<Route>,
    pid: u32,
    stream: Stream,
    /// What was read and not yet parsed into replies.
    input: Vec<u8>,
    /// A request was written by `push_quick` and its replies are still to be read.
    pending: bool,
}

thread_local! {
    static CONN: RefCell<Option<Direct>> = const { RefCell::new(None) };
}

/// The route of this thread's request written and its replies unread, if there is one:
/// the `push` that continues its `push_quick` must finish it on that route, never on
/// another connection (it may have been applied), even when the target has moved on
/// (a Sentinel failover).
pub fn pending() -> Option<Arc<Route>> {
    CONN.with(|cell| {
        cell.borrow()
            .as_ref()
            .filter(|d| d.pending)
            .map(|d| d.route.clone())
    })
}

/// Drops this thread's connection if a request on it is still pending: its push was
/// interrupted (an exception in the caller) before it read the replies, and they must
/// not be taken for another push's.
pub fn forget_pending() {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_some_and(|d| d.pending) {
            *slot = None;
        }
    });
}

/// Replies to one push: SADD, LPUSH.
const REPLIES: usize = 2;

fn request(qkey: &str, queues_key: &str, queue: &str, payloads: &[String]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + payloads.iter().map(|p| p.len() + 16).sum::<usize>());
    encode(
        &mut buf,
        &[b"SADD", queues_key.as_bytes(), queue.as_bytes()],
    );
    let mut lpush: Vec<&[u8]> = vec![b"LPUSH", qkey.as_bytes()];
    lpush.extend(payloads.iter().map(|p| p.as_bytes()));
    encode(&mut buf, &lpush);
    buf
}

/// Whether the jobs were stored: the LPUSH's reply says. `Ok(true)`: stored, and they
/// are all the queue holds (it was empty: idle fetchers need a wake-up). `Err`: they
/// were not; the shared path tries again and reports Redis's answer as the right error.
fn outcome(replies: &[Reply], pushed: usize) -> io::Result<bool> {
    match &replies[1] {
        Reply::Int(len) => Ok(*len == pushed as i64),
        Reply::Ok => Ok(false),
        Reply::Error(_) => Err(io::Error::other("Redis refused the push")),
    }
}

/// The first step, with the GVL held: on an existing connection, writes the push and
/// waits up to `SPIN` for both replies. `None`: not finished, call `push` (without the
/// GVL). `Some(Err)`: use the shared path.
pub fn push_quick(
    route: &Route,
    qkey: &str,
    queues_key: &str,
    queue: &str,
    payloads: &[String],
) -> Option<io::Result<bool>> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        // Replies a previous request never had read: start over.
        forget_stale(&mut slot, route, true);
        let conn = slot.as_mut()?;
        if let Err(e) = conn.send(&request(qkey, queues_key, queue, payloads)) {
            *slot = None;
            return Some(Err(e));
        }
        conn.pending = true;
        match conn.read_some() {
            Ok(()) => {}
            // Not there yet, or a signal arrived: the request is written and pending;
            // `push` reads its replies. (Dropping the connection here and pushing
            // again would store the jobs twice: a TERM trapped during an enqueue did.)
            Err(e) if not_yet(&e) => return None,
            Err(e) => {
                *slot = None;
                return Some(Err(e));
            }
        }
        let replies = conn.replies(REPLIES)?;
        conn.pending = false;
        Some(outcome(&replies, payloads.len()))
    })
}

/// Pushes `payloads` onto `qkey` and records `queue` in `queues_key`, as one pipeline,
/// or finishes the push `push_quick` started. Call it without the GVL. `Err` means:
/// use the shared path.
pub fn push(
    route: &Arc<Route>,
    timeout: Duration,
    cancel: &Cancel,
    qkey: &str,
    queues_key: &str,
    queue: &str,
    payloads: &[String],
) -> io::Result<bool> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        forget_stale(&mut slot, route, false);
        if slot.is_none() {
            match connect(route, timeout, cancel) {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    // A TLS handshake or AUTH that failed fails again: leave the route
                    // to the shared path, which reports why.
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::PermissionDenied
                    ) {
                        route.refuse();
                    }
                    return Err(e);
                }
            }
        }
        let conn = slot.as_mut().expect("connected above");
        let result = (|| {
            if !conn.pending {
                conn.send(&request(qkey, queues_key, queue, payloads))?;
                conn.pending = true;
            }
            let replies = conn.wait_replies(cancel, timeout, REPLIES)?;
            conn.pending = false;
            Ok(replies)
        })();
        match result.and_then(|replies| outcome(&replies, payloads.len())) {
            Ok(empty_before) => Ok(empty_before),
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    })
}

/// Drops this thread's connection if it is for another route or another process (a
/// forked child), or, with `pending_too`, if it has replies left unread.
fn forget_stale(slot: &mut Option<Direct>, route: &Route, pending_too: bool) {
    let pid = std::process::id();
    if slot
        .as_ref()
        .is_some_and(|d| d.route.id != route.id || d.pid != pid || (pending_too && d.pending))
    {
        *slot = None;
    }
}

impl Direct {
    /// Writes a request whole (with TLS, every record of it).
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)?;
        loop {
            match self.stream.flush() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue, // a signal
                other => return other,
            }
        }
    }

    /// One read of what has arrived, waiting at most the socket's read timeout.
    fn read_some(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 512];
        match self.stream.read(&mut chunk)? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            )),
            n => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// The first `count` replies, consumed only when all have arrived.
    fn replies(&mut self, count: usize) -> Option<Vec<Reply>> {
        let mut input = &self.input[..];
        let mut replies = Vec::with_capacity(count);
        for _ in 0..count {
            replies.push(reply(&mut input)?);
        }
        let used = self.input.len() - input.len();
        self.input.drain(..used);
        Some(replies)
    }

    /// Reads until `count` replies are complete, for at most `timeout`, looking for
    /// interrupts every `SLICE`: `Interrupted` when the wait is given up (the request
    /// stays pending), `TimedOut` at the deadline.
    fn wait_replies(
        &mut self,
        cancel: &Cancel,
        timeout: Duration,
        count: usize,
    ) -> io::Result<Vec<Reply>> {
        let deadline = Instant::now() + timeout;
        self.stream.tcp().set_read_timeout(Some(SLICE))?;
        let replies = loop {
            if let Some(replies) = self.replies(count) {
                break replies;
            }
            if cancel.should_stop() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
            }
            match self.read_some() {
                Ok(()) => {}
                Err(e) if not_yet(&e) => {}
                Err(e) => return Err(e),
            }
        };
        self.stream.tcp().set_read_timeout(Some(SPIN))?;
        Ok(replies)
    }
}

/// A read that ended with nothing: its timeout passed, or a signal arrived (a read with
/// a timeout returns EINTR even under SA_RESTART).
fn not_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One RESP2 reply if it has all arrived (advancing `input` past it): `+`, `:` and
/// bulk strings are Ok, `-` an error. Arrays are not expected here (`None`, as if
/// incomplete: the wait then times out).
fn reply(input: &mut &[u8]) -> Option<Reply> {
    let end = input.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&input[..end]).ok()?;
    let rest = &input[end + 2..];
    let (reply, rest) = match line.as_bytes().first()? {
        b'+' => (Reply::Ok, rest),
        b':' => (Reply::Int(line[1..].parse().ok()?), rest),
        b'-' => (Reply::Error(line[1..].to_string()), rest),
        b'$' => {
            let len: i64 = line[1..].parse().ok()?;
            let skip = if len >= 0 { len as usize + 2 } else { 0 };
            (Reply::Ok, rest.get(skip..)?)
        }
        _ => return None,
    };
    *input = rest;
    Some(reply)
}

fn connect(route: &Arc<Route>, timeout: Duration, cancel: &Cancel) -> io::Result<Direct> {
    let deadline = Instant::now() + timeout;
    let addr = (route.host.as_str(), route.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(timeout))?;
    let stream = match &route.tls {
        None => Stream::Plain(tcp),
        Some((config, name)) => {
            let mut tls = ClientConnection::new(Arc::clone(config), name.clone())
                .map_err(io::Error::other)?;
            let mut tcp = tcp;
            while tls.is_handshaking() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"));
                }
                tcp.set_read_timeout(Some(left))?;
                tls.complete_io(&mut tcp)?;
            }
            Stream::Tls(Box::new(StreamOwned::new(tls, tcp)))
        }
    };
    let mut conn = Direct {
        route: route.clone(),
        pid: std::process::id(),
        stream,
        input: Vec::with_capacity(64),
        pending: false,
    };
    let mut buf = Vec::new();
    let mut expected = 0;
    if let Some(password) = &route.password {
        match &route.username {
            Some(user) => encode(&mut buf, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => encode(&mut buf, &[b"AUTH", password.as_bytes()]),
        }
        expected += 1;
    }
    if route.db != 0 {
        encode(&mut buf, &[b"SELECT", route.db.to_string().as_bytes()]);
        expected += 1;
    }
    if expected > 0 {
        conn.send(&buf)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let replies = conn.wait_replies(cancel, left, expected)?;
        if replies.iter().any(|r| matches!(r, Reply::Error(_))) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "AUTH or SELECT refused",
            ));
        }
    }
    conn.stream.tcp().set_read_timeout(Some(SPIN))?;
    Ok(conn)
}

/// The connection: plain TCP, or TLS over it. Timeouts are set on the TCP socket; a
/// read that times out inside a TLS record leaves what arrived in rustls's buffer.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Reply {
    Ok,
    Int(i64),
    Error(String),
}

fn encode(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_in_resp() {
        let mut buf = Vec::new();
        encode(&mut buf, &[b"SADD", b"k", b"v"]);
        assert_eq!(buf, b"*3\r\n$4\r\nSADD\r\n$1\r\nk\r\n$1\r\nv\r\n");
    }

    #[test]
    fn reads_replies() {
        let mut input: &[u8] = b":3\r\n+OK\r\n-ERR wrong type\r\n$3\r\nabc\r\n$-1\r\n";
        assert_eq!(reply(&mut input).unwrap(), Reply::Int(3));
        assert_eq!(reply(&mut input).unwrap(), Reply::Ok);
        assert_eq!(
            reply(&mut input).unwrap(),
            Reply::Error("ERR wrong type".into())
        );
        assert_eq!(reply(&mut input).unwrap(), Reply::Ok);
        assert_eq!(reply(&mut input).unwrap(), Reply::Ok);
        assert!(reply(&mut input).is_none());
        // Incomplete replies are left where they are, to be read again with more.
        for partial in [&b":12"[..], b"$3\r\nab", b"$3\r\nabc\r"] {
            let mut input = partial;
            assert!(reply(&mut input).is_none());
            assert_eq!(input, partial);
        }
    }

    #[test]
    fn a_push_is_stored_when_its_lpush_was_taken_whatever_the_sadd_did() {
        let mut input: &[u8] = b"-OOM command not allowed\r\n:3\r\n";
        let replies: Vec<Reply> = (0..REPLIES).map(|_| reply(&mut input).unwrap()).collect();
        assert!(!outcome(&replies, 2).unwrap()); // 3 jobs after pushing 2: not empty before
        assert!(outcome(&replies, 3).unwrap()); // the queue was empty: wake fetchers
        assert!(input.is_empty());
        let full = [
            Reply::Error("OOM command not allowed".into()),
            Reply::Error("OOM command not allowed".into()),
        ];
        assert!(outcome(&full, 1).is_err());
    }

    #[test]
    fn a_flight_is_alone_only_without_another_nor_another_thread_just_before() {
        let a = InFlightPush::start();
        let b = InFlightPush::start();
        assert!(!b.alone());
        drop(b);
        drop(a);
        std::thread::spawn(|| drop(InFlightPush::start()))
            .join()
            .unwrap();
        assert!(!InFlightPush::start().alone()); // another thread pushed a moment ago
        assert!(InFlightPush::start().alone());
    }
}
