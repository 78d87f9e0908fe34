//! Git credentials from the secret store, against a real private git server: a Python HTTP
//! server on a loopback port that demands basic auth and serves a bare repository through
//! git's own smart-HTTP CGI (`git http-backend`). Without credentials and with a wrong
//! secret the trigger fails with git's error; with the right one the run succeeds; the
//! password appears nowhere Ferry stores or serves.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ferry_api::{ProjectCreate, ProjectUpdate, RunCreate, ScopeQuery, SecretKind, SecretSet};
use ferry_test_support::GitRepo;

use crate::common::{api_error, TestServer, RUN_TIMEOUT};

const USER: &str = "ferry-bot";
const RIGHT: &str = "gitpw-right-Vq82Lx";
const WRONG_PROJECT: &str = "gitpw-wrong-project-Hs61";
const WRONG_GLOBAL: &str = "gitpw-wrong-global-Pn47";

const YAML: &str = "version: 1\nname: private\nterraform: { dir: . }\n";
const TF: &str = "resource \"terraform_data\" \"x\" {\n  input = \"private\"\n}\n";

/// The private git server; killed when dropped.
struct GitServer {
    child: Child,
    url: String,
    _root: tempfile::TempDir,
}

impl GitServer {
    fn start(repo: &Path) -> GitServer {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("infra.git");
        let status = Command::new("git")
            .args(["clone", "--quiet", "--bare", "--"])
            .arg(repo)
            .arg(&bare)
            .status()
            .unwrap();
        assert!(status.success());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/git_http_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root.path())
            .env("GIT_SERVER_USER", USER)
            .env("GIT_SERVER_PASSWORD", RIGHT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        GitServer {
            child,
            url: format!("http://127.0.0.1:{port}/infra.git"),
            _root: root,
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret(v: &str) -> SecretSet {
    SecretSet {
        value: v.to_owned(),
    }
}

fn creds(secret: &str) -> ProjectUpdate {
    ProjectUpdate {
        git_username: Some(USER.to_owned()),
        git_secret: Some(secret.to_owned()),
    }
}

fn leaks(what: &str, text: &str) -> Vec<String> {
    [RIGHT, WRONG_PROJECT, WRONG_GLOBAL]
        .iter()
        .filter(|p| text.contains(**p))
        .map(|p| format!("{p} in {what}"))
        .collect()
}

fn leaks_in_dir(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                for p in [RIGHT, WRONG_PROJECT, WRONG_GLOBAL] {
                    if bytes.windows(p.len()).any(|w| w == p.as_bytes()) {
                        hits.push(format!("{p} in {}", path.display()));
                    }
                }
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repositories_are_fetched_with_a_secret_from_the_store() {
    let repo = GitRepo::new();
    repo.write("ferry.yaml", YAML).write("main.tf", TF);
    repo.commit("initial");
    let git = GitServer::start(repo.path());
    // Plain HTTP is off unless configured: git itself refuses the transport, at once.
    let strict = TestServer::start().await;
    let (status, body) = api_error(
        strict
            .admin
            .projects_create(&ProjectCreate {
                name: "private".into(),
                repo: git.url.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!((status, body.code.as_str()), (422, "repo_unreachable"));
    assert!(
        body.message.contains("transport 'http' not allowed"),
        "{body:?}"
    );
    strict.stop().await;
    let server = TestServer::start_with(
        |config| config.git.protocols.push(ferry_engine::git::Protocol::Http),
        reqwest::Client::new(),
    )
    .await;
    let admin = server.admin.clone();
    let mut served = Vec::new();

    // Without credentials the repository is unreachable: git's own words, no prompt.
    let (status, body) = api_error(
        admin
            .projects_create(&ProjectCreate {
                name: "private".into(),
                repo: git.url.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!((status, body.code.as_str()), (422, "repo_unreachable"));
    assert!(body.message.contains("Authentication failed"), "{body:?}");

    // A secret that is not set yet: a clear error naming it.
    let create = ProjectCreate {
        name: "private".into(),
        repo: git.url.clone(),
        git_username: Some(USER.into()),
        git_secret: Some("GIT_TOKEN".into()),
    };
    let (status, body) = api_error(admin.projects_create(&create).await);
    assert_eq!((status, body.code.as_str()), (422, "missing_secret"));
    assert!(body.message.contains("`GIT_TOKEN`"), "{body:?}");
    // Half the credentials, or a username git cannot send: refused.
    let (status, _) = api_error(
        admin
            .projects_create(&ProjectCreate {
                git_secret: None,
                ..create.clone()
            })
            .await,
    );
    assert_eq!(status, 422);
    let (status, _) = api_error(
        admin
            .projects_create(&ProjectCreate {
                git_username: Some("a:b".into()),
                ..create.clone()
            })
            .await,
    );
    assert_eq!(status, 422);

    let global = ScopeQuery::default();
    let project_scope = ScopeQuery::new(Some("private"), None);
    admin
        .secrets_set(SecretKind::Secret, "GIT_TOKEN", &global, &secret(RIGHT))
        .await
        .unwrap();
    let project = admin.projects_create(&create).await.unwrap();
    assert_eq!(project.git_username.as_deref(), Some(USER));
    assert_eq!(project.git_secret.as_deref(), Some("GIT_TOKEN"));
    served.push(("project create", format!("{project:?}")));

    // Credentials cleared: the trigger fails with git's error.
    let cleared = admin
        .projects_update("private", &ProjectUpdate::default())
        .await
        .unwrap();
    assert_eq!(cleared.git_secret, None);
    let (status, body) = api_error(admin.runs_create("private", &RunCreate::default()).await);
    assert_eq!((status, body.code.as_str()), (422, "git_error"), "{body:?}");
    assert!(body.message.contains("Authentication failed"), "{body:?}");
    served.push(("trigger without credentials", format!("{body:?}")));

    // Set again; then a wrong value at project scope wins over the right global one.
    admin
        .projects_update("private", &creds("GIT_TOKEN"))
        .await
        .unwrap();
    admin
        .secrets_set(
            SecretKind::Secret,
            "GIT_TOKEN",
            &project_scope,
            &secret(WRONG_PROJECT),
        )
        .await
        .unwrap();
    let (status, body) = api_error(admin.runs_create("private", &RunCreate::default()).await);
    assert_eq!((status, body.code.as_str()), (422, "git_error"), "{body:?}");
    assert!(body.message.contains("Authentication failed"), "{body:?}");
    served.push(("trigger with a wrong secret", format!("{body:?}")));
    // Setting credentials checks them: refused while the secret is wrong.
    let (status, body) = api_error(admin.projects_update("private", &creds("GIT_TOKEN")).await);
    assert_eq!((status, body.code.as_str()), (422, "repo_unreachable"));
    served.push(("update with a wrong secret", format!("{body:?}")));

    // The right value at project scope, a wrong one globally: the narrowest wins.
    admin
        .secrets_set(
            SecretKind::Secret,
            "GIT_TOKEN",
            &project_scope,
            &secret(RIGHT),
        )
        .await
        .unwrap();
    admin
        .secrets_set(
            SecretKind::Secret,
            "GIT_TOKEN",
            &global,
            &secret(WRONG_GLOBAL),
        )
        .await
        .unwrap();
    let run = admin
        .runs_create("private", &RunCreate::default())
        .await
        .unwrap();
    let detail = server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    served.push(("run detail", format!("{detail:?}")));
    let page = admin.logs_get(run.id, 0, 10_000).await.unwrap();
    served.push(("log", serde_json::to_string(&page).unwrap()));
    let got = admin.projects_list().await.unwrap();
    assert_eq!(got[0].git_secret.as_deref(), Some("GIT_TOKEN"));
    served.push(("projects", format!("{got:?}")));

    // Each use is audited: project, secret name, scope and version; never the value.
    let audit = server.call("GET", "/api/v1/audit?limit=1000", None).await;
    assert_eq!(audit.status, 200);
    let uses: Vec<&serde_json::Value> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.use" && e["details"]["purpose"] == "git")
        .collect();
    assert!(
        uses.iter().any(|e| e["details"]["project"] == "private"
            && e["details"]["scope"] == "project private"
            && e["details"]["version"] == 2),
        "{uses:#?}"
    );
    assert!(uses
        .iter()
        .any(|e| e["details"]["scope"] == "global" && e["details"]["version"] == 1));
    served.push(("audit", audit.text.clone()));

    let mut hits: Vec<String> = served.iter().flat_map(|(w, t)| leaks(w, t)).collect();
    let data = server.stop_keeping_data().await;
    hits.extend(leaks_in_dir(data.path()));
    assert!(hits.is_empty(), "git password leaked: {hits:#?}");
    // Every per-operation askpass dir is gone.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ferry-askpass-")
        })
        .collect();
    assert!(left.is_empty(), "askpass dirs left behind: {left:?}");
}
