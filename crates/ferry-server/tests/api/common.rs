//! The fixture every API test uses: a real Ferry server started in-process on a free
//! loopback port with its own data dir, an admin client reading `<data>/admin.token`, and
//! small helpers for raw HTTP calls, project setup and polling.

use std::time::Duration;

use ferry_api::{Client, ClientError, ErrorBody, ProjectCreate, RunDetail};
use ferry_secrets::KeySource;
use ferry_server::ServerConfig;
use ferry_test_support::GitRepo;
use serde_json::Value;

/// A running server. Stop it with [`TestServer::stop`] when runs may still be executing, so
/// their processes are terminated by the graceful shutdown rather than left behind.
pub(crate) struct TestServer {
    pub(crate) url: String,
    data: Option<tempfile::TempDir>,
    /// Runs' working directories (outside the data dir), removed with the server.
    _work: tempfile::TempDir,
    pub(crate) admin: Client,
    pub(crate) http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Repositories of the projects, kept alive as long as the server.
    repos: Vec<GitRepo>,
}

/// A raw HTTP answer: status, headers and the body parsed as JSON (`Value::Null` if the
/// body is not JSON; `text` keeps it as it came).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) json: Value,
    pub(crate) text: String,
}

impl Answer {
    /// Asserts this is an error answer with `status` and `code` in the standard JSON shape.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: u16, code: &str) -> ErrorBody {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let body: ErrorBody = serde_json::from_value(self.json.clone()).unwrap_or_else(|e| {
            panic!(
                "error body is not {{code, message}} JSON ({e}): {:?}",
                self.text
            )
        });
        assert_eq!(body.code, code, "unexpected code; body: {}", self.text);
        assert!(
            !body.message.trim().is_empty(),
            "empty message: {}",
            self.text
        );
        body
    }
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        TestServer::start_with(|_| {}, reqwest::Client::new()).await
    }

    /// A server whose configuration `adjust` changes first, spoken to with `http`.
    pub(crate) async fn start_with(
        adjust: impl FnOnce(&mut ServerConfig),
        http: reqwest::Client,
    ) -> TestServer {
        let data = tempfile::Builder::new()
            .prefix("ferry-api-test-")
            .tempdir()
            .expect("temp dir");
        let work = tempfile::Builder::new()
            .prefix("ferry-api-work-")
            .tempdir()
            .expect("temp dir");
        let passthrough_env = [
            "HOME",
            "USER",
            "LANG",
            "TMPDIR",
            "TF_CLI_CONFIG_FILE",
            "TF_PLUGIN_CACHE_DIR",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: data.path().to_owned(),
            master_key: KeySource::DataDir(data.path().to_owned()),
            kill_grace: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            path_var: ferry_test_support::path_with_terraform(),
            passthrough_env,
            access: ferry_server::AccessConfig {
                cookie_secure: false,
                ..Default::default()
            },
            tls: None,
            work_dir: Some(work.path().to_owned()),
            sandbox: Default::default(),
            git: Default::default(),
        };
        adjust(&mut config);
        let server = ferry_server::start(config).await.expect("server starts");
        let url = server.url.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let token = std::fs::read_to_string(ferry_server::admin_token_path(data.path()))
            .expect("admin.token written");
        let admin = Client::with_http(http.clone(), &url, token.trim());
        TestServer {
            url,
            data: Some(data),
            _work: work,
            admin,
            http,
            stop: Some(stop),
            serving: Some(serving),
            repos: Vec::new(),
        }
    }

    /// The server's data dir.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.data.as_ref().expect("data dir").path()
    }

    pub(crate) fn admin_token(&self) -> &str {
        self.admin.token()
    }

    /// Gracefully stops the server and waits until it has.
    pub(crate) async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the server and hands over its data dir (deleted when the result is dropped).
    pub(crate) async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(Duration::from_secs(30), serving)
                .await
                .expect("server stops within 30s")
                .expect("serve task")
                .expect("serve result");
        }
        self.data.take().expect("data dir")
    }

    /// A client acting as a new named, non-admin identity.
    pub(crate) async fn user(&self, name: &str) -> Client {
        let created = self
            .admin
            .tokens_create(&ferry_api::TokenCreate {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
            .expect("create token");
        Client::new(&self.url, &created.secret)
    }

    /// A client acting as a new service token with these grants (`operator`,
    /// `approver@net/prod`, ...).
    pub(crate) async fn user_with(&self, name: &str, scopes: &[&str]) -> Client {
        let created = self
            .admin
            .tokens_create(&ferry_api::TokenCreate {
                name: name.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            })
            .await
            .expect("create token");
        Client::new(&self.url, &created.secret)
    }

    /// A new git repository holding `files` (committed on `main`), registered as `name`.
    pub(crate) async fn project(&mut self, name: &str, files: &[(&str, &str)]) -> &GitRepo {
        let repo = GitRepo::new();
        for (path, contents) in files {
            repo.write(path, contents);
        }
        repo.commit("initial");
        let project = self
            .admin
            .projects_create(&ProjectCreate {
                name: name.to_owned(),
                repo: repo.path().to_string_lossy().into_owned(),
                ..Default::default()
            })
            .await
            .expect("register project");
        assert_eq!(project.name, name);
        self.repos.push(repo);
        self.repos.last().expect("just pushed")
    }

    /// A raw request with the admin token. `body` is sent as JSON when given.
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_as(Some(self.admin_token()), method, path, body)
            .await
    }

    pub(crate) async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req).await
    }

    /// A raw request with the admin token and an arbitrary body and content type.
    pub(crate) async fn call_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.admin_token())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_owned());
        answer(req).await
    }

    /// Polls the run until `done` holds for it, or panics after `timeout` showing the run.
    /// Uses the shared `wait_for` fixture on a blocking-allowed section of the runtime, so
    /// the in-process server keeps serving meanwhile.
    pub(crate) async fn wait_run(
        &self,
        id: i64,
        what: &str,
        timeout: Duration,
        done: impl Fn(&RunDetail) -> bool,
    ) -> RunDetail {
        let handle = tokio::runtime::Handle::current();
        let client = self.admin.clone();
        let mut last = None;
        let found = tokio::task::block_in_place(|| {
            let deadline = std::time::Instant::now() + timeout;
            ferry_test_support::wait_for(
                &format!("run {id}: {what}"),
                timeout + Duration::from_secs(1),
                || {
                    let detail = handle.block_on(client.runs_get(id)).expect("get run");
                    if done(&detail) {
                        return Some(detail);
                    }
                    let finished_elsewhere = detail.run.is_finished();
                    last = Some(detail);
                    // Fail fast (with the run in the message) rather than time out on a run that
                    // ended in some other way, or at the deadline.
                    if finished_elsewhere || std::time::Instant::now() >= deadline {
                        panic!("run {id} never reached `{what}`; last seen: {:#?}", last);
                    }
                    None
                },
            )
        });
        found
    }

    /// Waits until the run is in `status` (final or not).
    pub(crate) async fn wait_status(&self, id: i64, status: &str, timeout: Duration) -> RunDetail {
        let want = status.to_owned();
        self.wait_run(id, &format!("status {status}"), timeout, move |d| {
            d.run.status == want
        })
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request reaches the server");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
        text,
    }
}

/// The status and error body of a failed typed-client call.
#[track_caller]
pub(crate) fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, ErrorBody) {
    match result {
        Err(ClientError::Api { status, body }) => (status, body),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A pipeline with environments `dev` (auto-applied) and `prod` (needs approval).
pub(crate) fn two_env_yaml(name: &str, mode: &str) -> String {
    format!(
        "version: 1\nname: {name}\nmode: {mode}\nterraform: {{ dir: . }}\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: prod\n"
    )
}

/// A pipeline with one environment, `prod`, that needs approval.
pub(crate) fn prod_only_yaml(name: &str, mode: &str) -> String {
    format!("version: 1\nname: {name}\nmode: {mode}\nterraform: {{ dir: . }}\nenvironments:\n  - name: prod\n")
}

/// Approve-with-comment body.
pub(crate) fn approve(environment: &str) -> ferry_api::ApprovalCreate {
    ferry_api::ApprovalCreate {
        environment: environment.to_owned(),
        decision: "approve".into(),
        comment: "looks good".into(),
        break_glass: false,
    }
}

pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The one action of kind `command` in the run (panics if there is not exactly one).
pub(crate) fn command_action(detail: &RunDetail) -> &ferry_api::Action {
    let found: Vec<&ferry_api::Action> = detail
        .stages
        .iter()
        .flat_map(|s| &s.actions)
        .filter(|a| a.kind == "command")
        .collect();
    assert_eq!(found.len(), 1, "expected one command action: {detail:#?}");
    found[0]
}
