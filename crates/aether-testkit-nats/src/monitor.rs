//! A minimal HTTP/1.0 client for the server's monitoring endpoints (`/healthz`, `/jsz`,
//! `/routez`), so the harness needs no HTTP crate.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MONITOR_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET http://127.0.0.1:{port}{path}`; returns the status code and body.
pub(crate) async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|err| format!("write: {err}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|err| format!("read: {err}"))?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(MONITOR_IO_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {path} timed out after {MONITOR_IO_TIMEOUT:?}"))??;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: malformed response {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: malformed status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// `GET` a JSON endpoint that must answer 200.
pub(crate) async fn get_json(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = get(port, path).await?;
    if status != 200 {
        return Err(format!("GET {path}: HTTP {status}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|err| format!("GET {path}: invalid JSON ({err}): {body}"))
}

/// `Ok(())` when `/healthz` answers 200, else the reason.
pub(crate) async fn healthz(port: u16) -> Result<(), String> {
    let (status, body) = get(port, "/healthz").await?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("/healthz: HTTP {status}: {}", body.trim()))
    }
}
