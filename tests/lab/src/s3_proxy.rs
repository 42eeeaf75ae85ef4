//! A lab S3 proxy that forgets conditions: it forwards every HTTP/1.1
//! request to an S3 server unchanged except that it drops the
//! `If-None-Match` and `If-Match` headers, as an S3-compatible store that
//! ignores conditional writes behaves (the case runbook's S3 journal must
//! refuse). One thread per connection; each request is sent upstream with
//! `Connection: close` and the connection to the client closes after the
//! answer, so no request parsing beyond the head and `Content-Length` is
//! needed.
//!
//! Use it in front of moto, which does not check signatures: a stripped
//! header that was signed makes s3s-fs answer 403 instead.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// Headers the proxy drops (lower case).
const STRIPPED: &[&str] = &["if-none-match", "if-match"];

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct StrippingProxy {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    stripped: Arc<AtomicUsize>,
}

impl StrippingProxy {
    /// Listen on a free port of 127.0.0.1, forwarding to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> anyhow::Result<StrippingProxy> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("`{upstream}` is not http://IP:PORT"))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stripped = Arc::new(AtomicUsize::new(0));
        let (stop_flag, counter) = (Arc::clone(&stop), Arc::clone(&stripped));
        std::thread::spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let counter = Arc::clone(&counter);
                        std::thread::spawn(move || {
                            let _ = serve(client, upstream, &counter);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(StrippingProxy {
            address,
            stop,
            stripped,
        })
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// How many conditional headers it dropped so far.
    pub fn stripped(&self) -> usize {
        self.stripped.load(Ordering::SeqCst)
    }
}

impl Drop for StrippingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One connection: read a request head and body, forward it without the
/// conditions, copy the answer back, close.
fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    stripped: &AtomicUsize,
) -> anyhow::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut forwarded = String::new();
    let mut length = 0usize;
    for (index, line) in head.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if index > 0 {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if STRIPPED.contains(&name.as_str()) {
                stripped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if name == "connection" {
                continue;
            }
            if name == "content-length" {
                length = line
                    .split_once(':')
                    .and_then(|(_, value)| value.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    client.read_exact(&mut body)?;
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(forwarded.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    client.write_all(&answer)?;
    client.flush()?;
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}
