//! A minimal jsonrpsee server as its own process: one method, `ping`,
//! JSON-RPC over HTTP/1.1 on a Unix socket, one current-thread tokio
//! runtime (as `forge-sidecar serve` runs). The sidecar bench
//! (`benches/sidecar.rs`) measures its idle RSS and its cold start
//! (exec → socket accepting) in the same run as the sidecar's, as the
//! baseline of those two figures.
//!
//! Usage: `rpc_ping SOCKET` (serves until killed). Built by
//! `tests/benches/run.sh` with `cargo build --release --example rpc_ping`.

use jsonrpsee::server::{Server, ServerConfig, serve_with_graceful_shutdown, stop_channel};

fn main() {
    let Some(socket) = std::env::args_os().nth(1) else {
        eprintln!("usage: rpc_ping SOCKET");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match tokio::net::UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rpc_ping: cannot bind {}: {e}", socket.to_string_lossy());
                std::process::exit(1);
            }
        };
        let mut module = jsonrpsee::RpcModule::new(());
        module
            .register_method("ping", |_, _, _| "pong")
            .expect("register ping");
        let (stop_handle, _server_handle) = stop_channel();
        let builder = Server::builder()
            .set_config(ServerConfig::builder().http_only().build())
            .to_service_builder();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = builder.clone().build(module.clone(), stop_handle.clone());
            tokio::spawn(serve_with_graceful_shutdown(
                stream,
                service,
                stop_handle.clone().shutdown(),
            ));
        }
    });
}
