//! The local server's stand-in for S3's presigned URLs: `PUT /local-store/<token>` stores
//! one upload the API granted (exactly the granted size), `GET /local-store/<token>` streams
//! one assembled download from disk. Tokens are the URL's only credential, as with S3.

use axum::body::Body as AxumBody;
use futures_util::StreamExt as _;
use http::{Method, StatusCode};
use shared::adapters::local::work_store::{Refused, LOCAL_STORE_PATH};
use shared::adapters::LocalWorkStore;

/// A whole upload may take this long to arrive (a 100 MiB file over a slow link).
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Serves `req` when it is a local-store URL; gives the request back otherwise.
pub async fn serve(
    store: &LocalWorkStore,
    max_upload: u64,
    req: http::Request<hyper::body::Incoming>,
) -> Result<axum::response::Response, http::Request<hyper::body::Incoming>> {
    let Some(token) = req.uri().path().strip_prefix(LOCAL_STORE_PATH) else {
        return Err(req);
    };
    let token = token.to_string();
    let answer = |status: StatusCode, text: &str| {
        http::Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(AxumBody::from(format!("{text}\n")))
            .unwrap_or_default()
    };
    Ok(match *req.method() {
        Method::PUT => {
            // The token and the announced length first: nothing is read for a stranger.
            let Some(size) = store.upload_size(&token) else {
                return Ok(answer(
                    StatusCode::FORBIDDEN,
                    "unknown or expired upload URL",
                ));
            };
            let announced = req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n != size) {
                return Ok(answer(
                    StatusCode::BAD_REQUEST,
                    &format!("this URL takes exactly {size} bytes"),
                ));
            }
            let limit = usize::try_from(size.min(max_upload)).unwrap_or(usize::MAX);
            let body = AxumBody::new(req.into_body());
            let bytes =
                match tokio::time::timeout(UPLOAD_TIMEOUT, axum::body::to_bytes(body, limit)).await
                {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(_)) => return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, "too large")),
                    Err(_) => return Ok(answer(StatusCode::REQUEST_TIMEOUT, "upload too slow")),
                };
            match store.accept_upload(&token, bytes.to_vec()).await {
                Ok(()) => answer(StatusCode::OK, "stored"),
                Err(Refused::NotFound) => {
                    answer(StatusCode::FORBIDDEN, "unknown or expired upload URL")
                }
                Err(Refused::WrongSize { expected, got }) => answer(
                    StatusCode::BAD_REQUEST,
                    &format!("this URL takes exactly {expected} bytes, not {got}"),
                ),
            }
        }
        Method::GET => match store.open_download(&token) {
            Ok((path, name)) => match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    let len = file.metadata().await.map(|m| m.len()).unwrap_or_default();
                    let chunks = futures_util::stream::unfold(file, |mut file| async move {
                        use tokio::io::AsyncReadExt as _;
                        let mut buf = vec![0u8; 256 * 1024];
                        match file.read(&mut buf).await {
                            Ok(0) => None,
                            Ok(n) => {
                                buf.truncate(n);
                                Some((Ok::<_, std::io::Error>(buf), file))
                            }
                            Err(e) => Some((Err(e), file)),
                        }
                    })
                    .boxed();
                    http::Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/zip")
                        .header("content-length", len)
                        .header(
                            "content-disposition",
                            format!("attachment; filename=\"{name}\""),
                        )
                        .body(AxumBody::from_stream(chunks))
                        .unwrap_or_default()
                }
                Err(_) => answer(StatusCode::NOT_FOUND, "the download is gone"),
            },
            Err(_) => answer(StatusCode::FORBIDDEN, "unknown or expired download URL"),
        },
        _ => answer(StatusCode::METHOD_NOT_ALLOWED, "PUT or GET"),
    })
}
