//! The fault and latency layer (`faults.rs`) as a loopback HTTP/1.1 proxy, for tests of the
//! compiled binary: karpctl is pointed at it with `AWS_ENDPOINT_URL`, and it forwards to the
//! emulator, adding latency, faults, the request record, and the emulator's account header (so
//! binary tests get an account of their own, like in-process ones).
//!
//! It runs on a thread of its own with its own runtime, so it serves the same whether the test
//! is synchronous or async, and it can kill the process under test at an exact write
//! ([`FaultLayer::on_writes`]).

use std::io;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::faults::{error_response, identify, Exchange, Fault, FaultConfig, FaultLayer};
use super::{bin_command, emulator};

/// How long the proxy waits for the emulator before giving up on a request (and dropping the
/// client's connection, which the SDK sees as a network failure): no test hangs on it.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its layer: the request record and the write trigger.
    pub layer: Arc<FaultLayer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to the emulator that sends every request as `account`.
    pub fn start(account: &str, config: FaultConfig) -> Proxy {
        let upstream = emulator().url.trim_start_matches("http://").to_string();
        let layer = FaultLayer::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (account, served) = (account.to_string(), layer.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            tokio::spawn(serve(socket, served.clone(), upstream.clone(), account.clone()));
                        }
                    }
                }
            });
        });
        Proxy { url, layer, stop: Some(stop), thread: Some(thread) }
    }

    /// The compiled binary with `args`, pointed at this proxy, with no terminal attached.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = bin_command(&self.url, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 message: the start line, the headers, and the whole body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    /// The headers worth passing on: not the ones about this hop's connection or framing
    /// (the proxy re-frames every body with a Content-Length).
    fn end_to_end_headers(&self) -> impl Iterator<Item = &(String, String)> {
        const HOP: [&str; 6] =
            ["connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te"];
        self.headers.iter().filter(|(k, _)| !HOP.iter().any(|h| k.eq_ignore_ascii_case(h)))
    }
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string()))
}

/// Read one message; `None` when the peer closed the connection before a new one began.
/// `until_eof`: a body without framing runs to the end of the connection (responses only).
async fn read_message<R: AsyncBufRead + Unpin>(r: &mut R, until_eof: bool) -> io::Result<Option<Message>> {
    let Some(start) = read_line(r).await? else { return Ok(None) };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut msg = Message { start, headers, body: Vec::new() };
    if msg.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let size_line = read_line(r).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(r).await?.ok_or(io::ErrorKind::UnexpectedEof)?.is_empty() {}
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk).await?;
            msg.body.extend_from_slice(&chunk);
            read_line(r).await?;
        }
    } else if let Some(len) = msg.header("content-length") {
        let len: usize = len.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        msg.body = vec![0; len];
        r.read_exact(&mut msg.body).await?;
    } else if until_eof {
        r.read_to_end(&mut msg.body).await?;
    }
    Ok(Some(msg))
}

/// Send one request to the emulator as `account`, on a connection of its own.
async fn forward(upstream: &str, account: &str, req: &Message) -> io::Result<Message> {
    let mut s = TcpStream::connect(upstream).await?;
    let mut head = format!("{}\r\n", req.start);
    for (k, v) in req.end_to_end_headers().filter(|(k, _)| !k.eq_ignore_ascii_case("x-moto-account-id")) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "x-moto-account-id: {account}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        req.body.len()
    ));
    s.write_all(head.as_bytes()).await?;
    s.write_all(&req.body).await?;
    let mut r = BufReader::new(s);
    read_message(&mut r, true).await?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

fn response_bytes(status_line: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Serve one client connection: requests one after another (HTTP/1.1 keep-alive), each through
/// the layer. Returning drops the connection, which is also how the connection faults are made.
async fn serve(socket: TcpStream, layer: Arc<FaultLayer>, upstream: String, account: String) {
    let _ = socket.set_nodelay(true);
    let (r, mut w) = socket.into_split();
    let mut r = BufReader::new(r);
    while let Ok(Some(req)) = read_message(&mut r, false).await {
        let start = layer.now();
        let mut parts = req.start.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let id = identify(&method, &path, |n| req.header(n), &req.body);
        let fault = layer.decide(&id, &path, &req.body);
        let there = layer.config().latency / 2;
        let back = layer.config().latency - there;
        tokio::time::sleep(there).await;
        let record = |status: Option<u16>| {
            layer.record(Exchange {
                service: id.service.clone(),
                action: id.action.clone(),
                mutating: id.mutating(),
                start,
                end: layer.now(),
                status,
                fault,
            })
        };
        let reply = match fault {
            // The client was killed (`FaultLayer::is_cut`): what it had on the way is lost.
            _ if !layer.admit(id.mutating()) => None,
            Some(Fault::Reset) => None,
            Some(f @ (Fault::Throttle | Fault::Unavailable)) => {
                let (status, headers, body) = error_response(&id.service, f);
                let headers: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                Some((status, response_bytes(&format!("HTTP/1.1 {status} Error"), &headers, body.as_bytes())))
            }
            Some(Fault::ResponseLost) | None => {
                match tokio::time::timeout(UPSTREAM_TIMEOUT, forward(&upstream, &account, &req)).await {
                    Ok(Ok(resp)) => {
                        let status: u16 = resp.start.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                        if id.mutating() && status < 300 {
                            layer.write_done();
                        }
                        // The version is this hop's: always HTTP/1.1 to the client.
                        let line = format!("HTTP/1.1 {}", resp.start.split_once(' ').map_or("", |(_, s)| s));
                        let headers: Vec<(String, String)> = resp.end_to_end_headers().cloned().collect();
                        (fault.is_none()).then(|| (status, response_bytes(&line, &headers, &resp.body)))
                    }
                    _ => None,
                }
            }
        };
        let Some((status, bytes)) = reply else {
            record(None);
            return;
        };
        tokio::time::sleep(back).await;
        if w.write_all(&bytes).await.is_err() {
            record(None);
            return;
        }
        record(Some(status));
        if req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            return;
        }
    }
}
