//! HTTP: `GET /web/version`, `POST /jsonrpc` (services `common` and `object`),
//! `POST /json/2/<model>/<method>` (19+), the `Date` header from the fake
//! clock, fault injection, and connections that can be dropped mid-call.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::{IncomingStream, Listener};
use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::error::{Kind, OResult, OdooError};
use crate::orm::{self, Call, Proto};
use crate::store::{Db, as_i64, py_repr};
use crate::{Fault, Shared};

/// Binds 127.0.0.1:0 and serves until the returned sender fires (or drops).
pub(crate) async fn serve(shared: Arc<Shared>) -> (String, oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Odoo");
    let url = format!("http://{}", tcp.local_addr().expect("local addr"));
    let app = Router::new()
        .route("/web/version", get(web_version))
        .route("/jsonrpc", post(jsonrpc))
        .route("/json/2/{model}/{method}", any(json2))
        .fallback(not_found_html)
        .layer(middleware::from_fn_with_state(shared.clone(), date_header))
        .with_state(shared);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(
            KillableListener(tcp),
            app.into_make_service_with_connect_info::<ConnHandle>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await;
    });
    (url, tx)
}

// ------------------------------------------------------------- responses

fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn html_response(status: u16, title: &str, server: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1>\
         </center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

async fn not_found_html() -> Response {
    html_response(404, "404: Not Found", "Odoo")
}

async fn date_header(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let date = sh
        .now()
        .and_utc()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&date) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

async fn web_version(State(sh): State<Arc<Shared>>) -> Response {
    let v = sh.opts.version;
    json_response(
        200,
        &json!({"version_info": [v, 0, 0, "final", 0, ""], "version": format!("{v}.0")}),
    )
}

// -------------------------------------------------------------- pipeline

enum Outcome {
    Done(OResult<Value>),
    /// An injected fault answered instead of the server (nothing applied).
    Fault(Fault),
    /// Applied, then the connection was dropped.
    Dropped,
}

type Work = Box<dyn FnOnce(&Shared, &mut Db, NaiveDateTime) -> OResult<Value> + Send>;

/// Logs the call, takes a matching fault, waits the call delay, then runs
/// `work` under the database lock with the timestamp taken on arrival (so a
/// delayed write commits late with an older `write_date`). The work runs in a
/// task of its own: it completes even if the client hangs up.
async fn pipeline(
    sh: &Arc<Shared>,
    conn: &ConnHandle,
    model: Option<&str>,
    method: &str,
    work: Work,
) -> Outcome {
    let ts = sh.now();
    if let Some(model) = model {
        sh.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((model.to_string(), method.to_string()));
    }
    let fault = sh.take_fault(model, method);
    let mut delay = *sh
        .call_delay
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(Fault::Timeout(d)) = &fault {
        delay += *d;
    }
    let sh2 = sh.clone();
    let task = tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let apply = |work: Work| {
            let mut db = sh2
                .db
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&sh2, &mut db, ts)
        };
        match fault {
            None | Some(Fault::Timeout(_)) => Outcome::Done(apply(work)),
            Some(Fault::DropAfterApply) => {
                let _ = apply(work);
                Outcome::Dropped
            }
            Some(f) => Outcome::Fault(f),
        }
    });
    let out = task.await.unwrap_or_else(|e| {
        Outcome::Done(Err(OdooError::value(format!("fake Odoo task failed: {e}"))))
    });
    if matches!(out, Outcome::Dropped) {
        conn.kill();
    }
    out
}

/// The server-side error an injected fault stands for, if it is one.
fn fault_error(f: &Fault, model: Option<&str>) -> Option<OdooError> {
    Some(match f {
        Fault::SerializationFailure => OdooError::new(
            Kind::SerializationFailure,
            "could not serialize access due to concurrent update\n",
        ),
        Fault::AccessError => OdooError::new(
            Kind::AccessError,
            format!(
                "You are not allowed to access '{0}' ({0}) records.\n\nThis operation is \
                 allowed for the following groups:\n\t- Sales/User: Own Documents Only\n\n\
                 Contact your administrator to request access if necessary.",
                model.unwrap_or("res.users")
            ),
        ),
        Fault::ValidationError(msg) => OdooError::validation(msg.clone()),
        Fault::SessionExpired => OdooError::new(Kind::SessionExpired, "Session expired"),
        _ => return None,
    })
}

fn proxy_response(sh: &Shared, f: &Fault) -> Response {
    match f {
        Fault::Redirect { status, location } => {
            let title = match status {
                301 => "301 Moved Permanently",
                302 => "302 Found",
                307 => "307 Temporary Redirect",
                _ => "308 Permanent Redirect",
            };
            let mut r = html_response(*status, title, "nginx");
            if let Ok(v) = HeaderValue::from_str(location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Fault::HugeBody(bytes) => huge_body(sh, *bytes),
        Fault::TooMany429 => html_response(429, "429 Too Many Requests", "nginx"),
        Fault::Gateway504 => html_response(504, "504 Gateway Time-out", "nginx"),
        _ => html_response(502, "502 Bad Gateway", "nginx"),
    }
}

/// `200 application/json`, streamed in 64 KiB chunks, counted as they are taken.
fn huge_body(sh: &Shared, bytes: usize) -> Response {
    const CHUNK: usize = 64 * 1024;
    let sent = sh.huge_sent.clone();
    let head = Bytes::from_static(br#"{"jsonrpc": "2.0", "id": 1, "result": ""#);
    // Steps: the envelope's head, `x` chunks up to `bytes`, the closing quote.
    let stream = futures_util::stream::unfold(Some(0usize), move |done| {
        let sent = sent.clone();
        let head = head.clone();
        async move {
            let done = done?;
            let (chunk, next) = if done == 0 {
                (head.clone(), Some(head.len()))
            } else if done + CHUNK < bytes {
                (Bytes::from(vec![b'x'; CHUNK]), Some(done + CHUNK))
            } else {
                (Bytes::from_static(br#""}"#), None)
            };
            sent.fetch_add(chunk.len(), Ordering::Relaxed);
            Some((Ok::<_, io::Error>(chunk), next))
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

// -------------------------------------------------------------- JSON-RPC

fn rpc_envelope(id: &Value, result: OResult<Value>, version: u32) -> Response {
    let mut body = Map::new();
    body.insert("jsonrpc".into(), json!("2.0"));
    body.insert("id".into(), id.clone());
    match result {
        // `JsonRPCDispatcher._response` leaves `result` out when it is None.
        Ok(Value::Null) => {}
        Ok(v) => {
            body.insert("result".into(), v);
        }
        Err(e) => {
            body.insert("error".into(), e.jsonrpc_error(version));
        }
    }
    json_response(200, &Value::Object(body))
}

async fn jsonrpc(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    body: Bytes,
) -> Response {
    let version = sh.opts.version;
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = OdooError::new(Kind::BadRequest, format!("Invalid JSON data: {e}"));
            return rpc_envelope(&Value::Null, Err(err), version);
        }
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let params = req.get("params").cloned().unwrap_or(Value::Null);
    let service = params.get("service").and_then(Value::as_str).unwrap_or("");
    let method = params
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let args = match params.get("args") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(x) => {
            let err = OdooError::type_error(format!("args must be a list, got {}", py_repr(x)));
            return rpc_envelope(&id, Err(err), version);
        }
    };
    let disabled = sh.opts.version >= 19 && sh.opts.jsonrpc_disabled;
    let (model, work): (Option<String>, Work) = match service {
        "common" => {
            let gated = disabled && matches!(method.as_str(), "login" | "authenticate");
            let m = method.clone();
            (
                None,
                Box::new(move |sh, _db, _ts| {
                    if gated {
                        return Err(not_found());
                    }
                    common(sh, &m, &args)
                }),
            )
        }
        "object" => {
            if args.len() < 5 {
                let err = OdooError::new(Kind::IndexError, "tuple index out of range");
                return rpc_envelope(&id, Err(err), version);
            }
            let model = args[3].as_str().unwrap_or("").to_string();
            let m = method.clone();
            (
                Some(model),
                Box::new(move |sh, db, ts| {
                    if disabled {
                        return Err(not_found());
                    }
                    object(sh, db, &m, args, ts)
                }),
            )
        }
        other => {
            let err = OdooError::new(Kind::KeyError, format!("'{other}'"));
            return rpc_envelope(&id, Err(err), version);
        }
    };
    // Object calls are logged and matched as `<model method>`, common ones by name.
    let logged_method = if model.is_some() {
        params
            .get("args")
            .and_then(|a| a.get(4))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        method.clone()
    };
    match pipeline(&sh, &conn, model.as_deref(), &logged_method, work).await {
        Outcome::Done(r) => rpc_envelope(&id, r, version),
        Outcome::Dropped => StatusCode::BAD_GATEWAY.into_response(),
        Outcome::Fault(f) => match fault_error(&f, model.as_deref()) {
            Some(e) => rpc_envelope(&id, Err(e), version),
            None => proxy_response(&sh, &f),
        },
    }
}

fn not_found() -> OdooError {
    OdooError::new(
        Kind::NotFound,
        "The requested URL was not found on the server. If you entered the URL manually \
         please check your spelling and try again.",
    )
}

fn check_password(sh: &Shared, db: &str, login: Option<&str>, uid: Option<i64>, pw: &str) -> bool {
    let o = &sh.opts;
    db == o.db
        && login.is_none_or(|l| l == o.login)
        && uid.is_none_or(|u| u == o.uid)
        && !pw.is_empty()
        && (pw == o.password || pw == o.api_key)
}

/// `common`: version, authenticate (→ uid or false), login.
fn common(sh: &Shared, method: &str, args: &[Value]) -> OResult<Value> {
    let v = sh.opts.version;
    let s = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or("");
    let need = |n: usize, f: &str, params: &[&str]| {
        if args.len() < n {
            let missing = &params[args.len()..n];
            Err(OdooError::type_error(format!(
                "{f}() missing {} required positional argument{}: {}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|p| format!("'{p}'"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )))
        } else {
            Ok(())
        }
    };
    match method {
        "version" => Ok(json!({
            "server_version": format!("{v}.0"),
            "server_version_info": [v, 0, 0, "final", 0, ""],
            "server_serie": format!("{v}.0"),
            "protocol_version": 1,
        })),
        "authenticate" | "login" => {
            if method == "authenticate" {
                need(
                    4,
                    "exp_authenticate",
                    &["db", "login", "password", "user_agent_env"],
                )?;
            } else {
                need(3, "exp_login", &["db", "login", "password"])?;
            }
            Ok(if check_password(sh, s(0), Some(s(1)), None, s(2)) {
                json!(sh.opts.uid)
            } else {
                Value::Bool(false)
            })
        }
        other => Err(OdooError::new(Kind::KeyError, format!("'exp_{other}'"))),
    }
}

/// `object`: execute_kw(db, uid, password, model, method, args, kwargs) and
/// execute(db, uid, password, model, method, *args).
fn object(
    sh: &Shared,
    db: &mut Db,
    method: &str,
    args: Vec<Value>,
    ts: NaiveDateTime,
) -> OResult<Value> {
    let mut it = args.into_iter();
    let dbname = it.next().unwrap_or_default();
    let uid = it.next().unwrap_or_default();
    let pw = it.next().unwrap_or_default();
    let uid = match &uid {
        Value::Bool(false) | Value::Null => 0,
        Value::String(s) => s.trim().parse().map_err(|_| {
            OdooError::value(format!("invalid literal for int() with base 10: '{s}'"))
        })?,
        x => as_i64(x).ok_or_else(|| {
            OdooError::type_error(format!(
                "int() argument must be a string, a bytes-like object or a real number, not {}",
                py_repr(x)
            ))
        })?,
    };
    if !check_password(
        sh,
        dbname.as_str().unwrap_or(""),
        None,
        Some(uid),
        pw.as_str().unwrap_or(""),
    ) {
        return Err(OdooError::access_denied());
    }
    let model = it
        .next()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let mname = it
        .next()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let (call_args, mut kwargs) = match method {
        "execute_kw" => {
            let a = match it.next() {
                Some(Value::Array(a)) => a,
                Some(x) => {
                    return Err(OdooError::type_error(format!(
                        "argument after * must be an iterable, not {}",
                        py_repr(&x)
                    )));
                }
                None => {
                    return Err(OdooError::type_error(
                        "execute_kw() missing 1 required positional argument: 'args'",
                    ));
                }
            };
            let kw = match it.next() {
                Some(Value::Object(o)) => o,
                None | Some(Value::Null) | Some(Value::Bool(false)) => Map::new(),
                Some(x) => {
                    return Err(OdooError::type_error(format!(
                        "argument after ** must be a mapping, not {}",
                        py_repr(&x)
                    )));
                }
            };
            (a, kw)
        }
        "execute" => (it.collect(), Map::new()),
        other => {
            return Err(OdooError::new(
                Kind::UserError,
                format!("Method not available {other}"),
            ));
        }
    };
    let context = match kwargs.remove("context") {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    orm::execute(
        db,
        Call {
            proto: Proto::JsonRpc,
            model,
            method: mname,
            ids: Value::Null,
            args: call_args,
            kwargs,
            context,
        },
        ts,
    )
}

// ---------------------------------------------------------------- JSON-2

async fn json2(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path((model, method)): Path<(String, String)>,
    http_method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sh.opts.version < 19 {
        return not_found_html().await;
    }
    let fail = |e: OdooError| json_response(e.json2_status(), &e.serialize());
    if http_method != Method::POST {
        return fail(OdooError::new(
            Kind::NotFound,
            "Did you mean POST /json/2/<model>/<method>?",
        ));
    }
    if let Some(db) = headers.get("x-odoo-database")
        && db.to_str().ok() != Some(sh.opts.db.as_str())
    {
        return not_found_html().await;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_default();
    let mut params = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return fail(OdooError::new(
                    Kind::BadRequest,
                    "could not parse the body, expecting a json object",
                ));
            }
            Err(e) => {
                return fail(OdooError::new(
                    Kind::BadRequest,
                    format!("could not parse the body as json: {e}"),
                ));
            }
        }
    };
    let ids = params.remove("ids").unwrap_or(Value::Null);
    let context = match params.remove("context") {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    let (m2, meth2) = (model.clone(), method.clone());
    let work: Work = Box::new(move |sh, db, ts| {
        if token.is_empty() || token != sh.opts.api_key {
            return Err(OdooError::new(Kind::Unauthorized, "Invalid apikey"));
        }
        orm::execute(
            db,
            Call {
                proto: Proto::Json2,
                model: m2,
                method: meth2,
                ids,
                args: Vec::new(),
                kwargs: params,
                context,
            },
            ts,
        )
    });
    match pipeline(&sh, &conn, Some(&model), &method, work).await {
        Outcome::Done(Ok(v)) => json_response(200, &v),
        Outcome::Done(Err(e)) => fail(e),
        Outcome::Dropped => StatusCode::BAD_GATEWAY.into_response(),
        Outcome::Fault(f) => match fault_error(&f, Some(&model)) {
            Some(e) => fail(e),
            None => proxy_response(&sh, &f),
        },
    }
}

// ------------------------------------------------- droppable connections

/// Per-connection handle (the `ConnectInfo`): killing it makes the
/// connection's I/O fail, so hyper closes the socket without answering.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(crate) struct KillableListener(TcpListener);

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let killed = Arc::new(AtomicBool::new(false));
                    let io = KillableStream {
                        inner: stream,
                        killed: killed.clone(),
                    };
                    return (io, ConnHandle(killed));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle(Arc::new(AtomicBool::new(false))))
    }
}

pub(crate) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn dead(&self) -> Option<io::Error> {
        self.killed
            .load(Ordering::SeqCst)
            .then(|| io::Error::from(io::ErrorKind::ConnectionAborted))
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.dead() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.dead() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.dead() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
