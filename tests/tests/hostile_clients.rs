//! End-to-end: what a hostile or broken client can send. Every input gets an
//! answer (a JSON-RPC error or an HTTP status), the process never dies, and
//! other callers keep being served.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use forge_e2e::sidecar::SidecarProcess;
use forge_sidecar::client::SocketClient;
use proptest::prelude::*;
use serde_json::json;

/// Send `body` as a JSON POST on a fresh connection; the HTTP status.
fn post(socket: &std::path::Path, body: &[u8]) -> u16 {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("an answer");
    let line = String::from_utf8_lossy(&resp);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {line:?}"))
}

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("read_issue"),
        Just("post_comment"),
        Just("signal_done"),
        Just("scope"),
        Just("x"),
        Just("")
    ];
    let value = prop_oneof![
        Just("17".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e400".to_string()),
        Just("null".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        "[a-z]{0,8}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let params = prop_oneof![
        (value.clone(), value.clone()).prop_map(|(a, b)| format!("[{a},{b}]")),
        (value.clone(), value.clone())
            .prop_map(|(a, b)| format!("{{\"number\":{a},\"body\":{b}}}")),
        value.clone(),
    ];
    let call = (method, params, value).prop_map(|(m, p, id)| {
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{m}\",\"params\":{p}}}")
    });
    prop_oneof![
        call.clone().prop_map(String::into_bytes),
        proptest::collection::vec(call, 0..5)
            .prop_map(|v| format!("[{}]", v.join(",")).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

#[test]
fn arbitrary_bodies_always_get_an_answer_and_never_kill_the_server() {
    let mut s = SidecarProcess::memory(&["--max-writes", "1000"]);
    let socket = s.socket.clone();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    runner
        .run(&jsonish(), |body| {
            let status = post(&socket, &body);
            prop_assert!(
                [200, 400, 413, 415].contains(&status),
                "HTTP {} for {:?}",
                status,
                String::from_utf8_lossy(&body)
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(
        post(&socket, br#"{"jsonrpc":"2.0","id":1,"method":"scope"}"#),
        200
    );
    s.stop();
}

#[tokio::test]
async fn slow_and_many_clients_do_not_starve_the_others() {
    let s = SidecarProcess::memory(&[]);
    // Fifty connections that send half a request header and stall.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut conn = UnixStream::connect(&s.socket).unwrap();
        conn.write_all(b"POST / HTTP/1.1\r\nHost: s\r\nContent-Le")
            .unwrap();
        stalled.push(conn);
    }
    // Two hundred concurrent callers, each on its own connection.
    let mut calls = Vec::new();
    for i in 0..200u64 {
        let client = SocketClient::new(&s.socket, Duration::from_secs(30));
        calls.push(tokio::spawn(async move {
            client
                .call("read_issue", Some(json!({"number": 1 + i % 20})))
                .await
        }));
    }
    for call in calls {
        let result = call.await.unwrap().expect("reachable");
        assert!(result.is_ok(), "{result:?}");
    }
    drop(stalled);
}

/// A connection busy with a request whose body never finishes arriving.
fn busy_connection(socket: &std::path::Path) -> UnixStream {
    let mut conn = UnixStream::connect(socket).unwrap();
    conn.write_all(
        b"POST / HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    conn
}

/// Replace the held connections the server closed (it closes one that is
/// still idle, its request unread, to make room for a new caller).
fn reopen_closed(socket: &std::path::Path, held: &mut [UnixStream]) {
    for conn in held.iter_mut() {
        conn.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        // Anything but "nothing yet" means the server is done with it.
        if !matches!(conn.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            *conn = busy_connection(socket);
        }
    }
}

/// Wait (bounded) until a call on a fresh connection gets HTTP 503, keeping
/// every held connection open and busy; the 503's body.
async fn wait_until_refused(socket: &std::path::Path, held: &mut [UnixStream]) -> Vec<u8> {
    let scope = br#"{"jsonrpc":"2.0","id":1,"method":"scope"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        reopen_closed(socket, held);
        // A connection over the cap is answered and closed at once: a client
        // still writing its request then sees a broken pipe instead of the
        // answer. Such a refusal is retried here.
        let answer = SocketClient::new(socket, Duration::from_secs(10))
            .post_raw(&scope[..])
            .await;
        if let Ok((503, body)) = answer {
            return body.to_vec();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused with every connection busy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_over_the_limit_get_a_clear_refusal_and_recover() {
    let s = SidecarProcess::memory(&[]);
    // 256 connections busy with a request whose body is still coming: none
    // is idle, so none can be closed to make room.
    let mut held: Vec<UnixStream> = (0..256).map(|_| busy_connection(&s.socket)).collect();
    let body = wait_until_refused(&s.socket, &mut held).await;
    let scope = br#"{"jsonrpc":"2.0","id":1,"method":"scope"}"#;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"].as_i64(), Some(-32005), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 256 connections"),
        "{body}"
    );

    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = SocketClient::new(&s.socket, Duration::from_secs(10))
            .post_raw(&scope[..])
            .await
            .unwrap();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the held connections closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refusals = s
        .events()
        .iter()
        .filter(|(_, _, v)| {
            v["summary"]
                .as_str()
                .is_some_and(|t| t.starts_with("refused (connection)"))
        })
        .count();
    assert!(refusals >= 1);
}
