//! A throwaway S3 server for `--dev` and the tests: the `s3s-fs` crate (an S3 server on the file
//! system) embedded on a loopback port, with SigV4 authentication on, so a wrong, tampered or
//! expired signature is refused exactly as MinIO would (MinIO itself cannot be installed on
//! these machines). Buckets are folders under its root; the root goes with the value.
//!
//! It runs on a thread and runtime of its own, so it outlives any one test's runtime and can be
//! stopped and restarted on the same port for outage tests.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::sync::oneshot;

pub const ACCESS_KEY: &str = "ibex-dev-access-key";
pub const SECRET_KEY: &str = "ibex-dev-secret-key-not-for-production";
pub const REGION: &str = "us-east-1";
pub const EXPORT_BUCKET: &str = "ibex-exports";
pub const ARCHIVE_BUCKET: &str = "ibex-archives";

#[derive(Debug)]
pub struct TempS3 {
    addr: SocketAddr,
    root: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TempS3 {
    /// Starts on a free loopback port with both buckets created.
    pub fn start() -> Result<Self, String> {
        let root = std::env::temp_dir().join(format!("ibex-s3-{}", uuid::Uuid::new_v4().simple()));
        for bucket in [EXPORT_BUCKET, ARCHIVE_BUCKET] {
            std::fs::create_dir_all(root.join(bucket))
                .map_err(|e| format!("cannot create the S3 root: {e}"))?;
        }
        let listener = StdListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut server = Self {
            addr,
            root,
            stop: None,
            thread: None,
        };
        server.serve(listener)?;
        Ok(server)
    }

    fn serve(&mut self, listener: StdListener) -> Result<(), String> {
        let fs = s3s_fs::FileSystem::new(&self.root).map_err(|e| format!("s3s-fs: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dev-s3".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the dev S3 server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a tokio listener for the dev S3 server");
                    let _ = ready.send(());
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let service = service.clone();
                            tokio::spawn(async move {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here closes every open connection.
            })
            .map_err(|e| e.to_string())?;
        is_ready
            .recv()
            .map_err(|_| "the dev S3 server did not start".to_owned())?;
        self.stop = Some(stop);
        self.thread = Some(thread);
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the buckets' files are (a bucket is a folder).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Stops serving: connections are refused until [`TempS3::restart`].
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Serves again on the same port, with the same objects.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let listener = StdListener::bind(self.addr).map_err(|e| e.to_string())?;
        self.serve(listener)
    }

    /// The `IBEX_API_S3_*` settings that point at this server.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IBEX_API_S3_ENDPOINT", self.endpoint()),
            ("IBEX_API_S3_REGION", REGION.into()),
            ("IBEX_API_S3_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("IBEX_API_S3_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("IBEX_API_EXPORT_BUCKET", EXPORT_BUCKET.into()),
            ("IBEX_API_ARCHIVE_BUCKET", ARCHIVE_BUCKET.into()),
        ]
    }
}

impl Drop for TempS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
