//! Secrets in runs, end to end over the real server, git and Terraform: the canary test
//! (seed secrets, print them in every form the masker knows, feed one to Terraform as a
//! `TF_VAR_` and output it, then scan everything Ferry stores or serves for the
//! plaintexts), stage and branch limits, and references that cannot be resolved.

use std::path::Path;
use std::time::Duration;

use ferry_api::{RunCreate, ScopeQuery, SecretKind, SecretSet};

use crate::common::{api_error, TestServer, RUN_TIMEOUT};

const PLAIN: &str = "canary-plain-Hq7Lw2";
const SPLIT: &str = "canary-split-Xk93Jd";
/// Longer than 57 bytes, so `base64` wraps its encoding at 76 columns.
const B64: &str = "canary-base64-Vb81Pq-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ";
const JSONISH: &str = r#"canary-json"quote\back-7f3a"#;
const TF: &str = "canary-terraform-Mz5Rt8";
const FILE: &str = "canary-file-Yt62Nc";
const APPLY_ONLY: &str = "canary-apply-only-Ws40Ke";

const CANARY_YAML: &str = r#"version: 1
name: canary
terraform: { dir: . }
secrets:
  - { name: PLAIN, as: PLAIN }
  - { name: SPLIT, as: SPLIT }
  - { name: B64, as: B64 }
  - { name: JSONISH, as: JSONISH }
  - { name: TF_PASSWORD, as: TF_VAR_db_password }
  - { name: FILE_SECRET, file: creds/key.txt }
  - { name: APPLY_ONLY, as: APPLY_ONLY, stages: [apply, verify] }
  - { name: FILE_SECRET, as: FILE_AS_ENV }
params:
  - { name: REGION, as: REGION }
  - { name: REGION, as: REGION_AGAIN }
stages:
  test:
    - |
      echo "plain: $PLAIN"
    - |
      printf 'split: %s' "$(printf %s "$SPLIT" | head -c 9)"; sleep 0.3; printf '%s\n' "$(printf %s "$SPLIT" | tail -c +10)"
    - |
      printf %s "$B64" | base64; printf 'xy%s' "$B64" | base64 -w0; echo; printf 'z%s' "$B64" | base64 -w0; echo
    - |
      printf '{"pw":"%s"}\n' "$(printf %s "$JSONISH" | sed 's/["\\]/\\&/g')"
    - |
      cat "$FERRY_SECRETS_DIR/creds/key.txt"; echo; stat -c 'mode %a' "$FERRY_SECRETS_DIR/creds/key.txt"; echo "dir $FERRY_SECRETS_DIR" > "$TMPDIR/secrets-dir.txt"
    - |
      test -z "$APPLY_ONLY" && echo "apply-only absent in test"
    - |
      echo "region=$REGION"
    - |
      echo "region again=$REGION_AGAIN"; test "$FILE_AS_ENV" = "$(cat "$FERRY_SECRETS_DIR/creds/key.txt")" && echo "file secret mapped twice"
    - |
      echo "backend: $TF_HTTP_PASSWORD"
  verify:
    - |
      echo "apply-only: $APPLY_ONLY"; test ! -e "$(cut -c5- "$TMPDIR/secrets-dir.txt")" && echo "test's secret dir removed"
"#;

const CANARY_TF: &str = r#"variable "db_password" {
  type = string
}

resource "terraform_data" "pw" {
  input = var.db_password
}

output "pw" {
  value = var.db_password
}
"#;

const ALL: &[&str] = &[PLAIN, SPLIT, B64, JSONISH, TF, FILE, APPLY_ONLY];

fn value(v: &str) -> SecretSet {
    SecretSet {
        value: v.to_owned(),
    }
}

/// Every file under `dir` that holds one of `needles`, with the needle.
fn hits_in_dir(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    hits.push(format!("{n} in {}", path.display()));
                }
            }
        }
    }
    hits
}

fn hits_in(what: &str, text: &str, needles: &[&str]) -> Vec<String> {
    needles
        .iter()
        .filter(|n| text.contains(**n))
        .map(|n| format!("{n} in {what}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_never_leave_the_store_unmasked() {
    let mut server = TestServer::start().await;
    server
        .project(
            "canary",
            &[("ferry.yaml", CANARY_YAML), ("main.tf", CANARY_TF)],
        )
        .await;
    let admin = server.admin.clone();
    let global = ScopeQuery::default();
    let project = ScopeQuery::new(Some("canary"), None);
    let env = ScopeQuery::new(Some("canary"), Some("default"));
    for (name, v, scope) in [
        ("PLAIN", PLAIN, &global),
        ("SPLIT", SPLIT, &project),
        ("B64", B64, &env),
        ("JSONISH", JSONISH, &global),
        ("TF_PASSWORD", TF, &env),
        ("FILE_SECRET", FILE, &project),
        ("APPLY_ONLY", APPLY_ONLY, &global),
    ] {
        admin
            .secrets_set(SecretKind::Secret, name, scope, &value(v))
            .await
            .unwrap();
    }
    // A narrower scope wins: the project value of PLAIN is never used.
    admin
        .secrets_set(
            SecretKind::Secret,
            "TF_PASSWORD",
            &project,
            &value("canary-not-used-X"),
        )
        .await
        .unwrap();
    admin
        .secrets_set(SecretKind::Param, "REGION", &global, &value("eu-west-1"))
        .await
        .unwrap();

    let run = admin
        .runs_create("canary", &RunCreate::default())
        .await
        .unwrap();
    let detail = server
        .wait_status(run.id, "Succeeded", RUN_TIMEOUT * 2)
        .await;

    // The log: every form masked, parameters in clear, stage limits kept.
    let page = admin.logs_get(run.id, 0, 10_000).await.unwrap();
    let log: Vec<&str> = page.lines.iter().map(|l| l.text.as_str()).collect();
    let log_text = log.join("\n");
    for expected in [
        "plain: ***",
        "split: ***",
        r#"{"pw":"***"}"#,
        "mode 600",
        "apply-only absent in test",
        "region=eu-west-1",
        "region again=eu-west-1",
        "file secret mapped twice",
        "backend: ***",
        "apply-only: ***",
        "test's secret dir removed",
    ] {
        assert!(
            log.contains(&expected),
            "`{expected}` not in the log:\n{log_text}"
        );
    }
    assert!(
        log_text.contains("pw = \"***\""),
        "terraform output:\n{log_text}"
    );
    // The three base64 forms (wrapped at 76 columns, and at two other alignments).
    let b64_action = log
        .iter()
        .position(|l| l.starts_with("$ printf %s \"$B64\""))
        .unwrap();
    let masked_b64 = log[b64_action..]
        .iter()
        .skip(1)
        .take_while(|l| !l.starts_with("$ "))
        .filter(|l| l.contains("***"))
        .count();
    assert_eq!(masked_b64, 3, "base64 forms masked:\n{log_text}");

    // Which versions the run used: every secret and parameter once, at its resolved scope.
    let (key, _) = ferry_secrets::MasterKey::load(&ferry_secrets::KeySource::DataDir(
        server.data_dir().to_owned(),
    ))
    .unwrap();
    let store = ferry_store::Store::open_read_only(
        &server.data_dir().join("ferry.db"),
        &key,
        server.data_dir().join("audit.head"),
    )
    .await
    .unwrap();
    let used = store.run_secret_versions(run.id).await.unwrap();
    assert_eq!(used.len(), 8, "{used:?}");
    let tf = used.iter().find(|u| u.1 == "TF_PASSWORD").unwrap();
    assert_eq!(tf.2.to_string(), "project canary environment default");
    let audit = store.audit_records(0, 10_000).await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "secret.use").count(),
        7,
        "one use entry per secret"
    );
    let mut audit_text = String::new();
    for r in &audit {
        audit_text.push_str(&format!(
            "{} {} {} {}\n",
            r.actor, r.action, r.target, r.details
        ));
    }
    store.close().await;
    let listed = admin.secrets_list(SecretKind::Secret, None).await.unwrap();
    assert!(listed
        .iter()
        .filter(|s| s.name != "TF_PASSWORD" || s.environment.is_some())
        .all(|s| s.last_used_run == Some(run.id)));

    // Everything Ferry serves.
    let mut served = vec![
        ("run detail", format!("{detail:?}")),
        ("log page", serde_json::to_string(&page).unwrap()),
        ("audit", audit_text),
    ];
    for path in [
        format!("/api/v1/runs/{}", run.id),
        "/api/v1/runs".to_owned(),
        format!("/api/v1/runs/{}/logs", run.id),
        "/api/v1/secrets".to_owned(),
        "/api/v1/params".to_owned(),
        "/api/v1/states".to_owned(),
        "/api/v1/states/canary/default".to_owned(),
        "/api/v1/states/canary/default/versions".to_owned(),
        "/api/v1/queue".to_owned(),
        "/metrics".to_owned(),
    ] {
        let answer = server.call("GET", &path, None).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        served.push(("GET", format!("{path} {}", answer.text)));
    }
    let sse = tokio::time::timeout(
        Duration::from_secs(10),
        server
            .http
            .get(format!("{}/api/v1/runs/{}/logs/stream", server.url, run.id))
            .bearer_auth(server.admin_token())
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    let sse = tokio::time::timeout(Duration::from_secs(10), sse.text())
        .await
        .expect("the stream of a finished run ends")
        .unwrap();
    assert!(sse.contains("plain: ***"), "{sse}");
    served.push(("SSE stream", sse));

    // The plaintexts, and 12 characters from the middle of each one's base64 in every
    // alignment (enough to decode 9 bytes of it).
    let mut needles: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
    for secret in ALL {
        for prefix in ["", "x", "xy"] {
            use base64::Engine as _;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}"));
            needles.push(encoded[4..16].to_owned());
        }
    }
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let mut hits = Vec::new();
    for (what, text) in &served {
        hits.extend(hits_in(what, text, &needles));
    }
    // Everything Ferry stores: database (audit included), blobs, logs, plans.
    let data = server.stop_keeping_data().await;
    hits.extend(hits_in_dir(data.path(), &needles));
    // The scan does read the stored logs: the parameter, which is not masked, is there.
    assert!(!hits_in_dir(data.path(), &["region=eu-west-1"]).is_empty());
    assert!(hits.is_empty(), "plaintext found:\n{}", hits.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_references_and_branches_the_pipeline_does_not_deploy() {
    let mut server = TestServer::start().await;
    let yaml = "version: 1\nname: gated\nsource: { branches: [main] }\nterraform: { dir: . }\nsecrets:\n  - { name: DEPLOY_KEY, as: DEPLOY_KEY }\n  - { name: FEATURE_ONLY, as: FEATURE_ONLY, branches: [\"feature/*\"] }\nstages:\n  test:\n    - 'echo \"key=$DEPLOY_KEY feature=${FEATURE_ONLY:-none}\"'\n";
    let repo = server
        .project("gated", &[("ferry.yaml", yaml), ("main.tf", "")])
        .await;
    repo.branch("feature/x");
    repo.branch("main");
    let admin = server.admin.clone();

    // Nothing set: the trigger is refused, naming the secret and the scopes searched.
    let (status, err) = api_error(admin.runs_create("gated", &RunCreate::default()).await);
    assert_eq!((status, err.code.as_str()), (422, "missing_secret"));
    assert_eq!(
        err.message,
        "secret `DEPLOY_KEY` is not set for project gated environment default, project gated or globally (referenced by ferry.yaml); set it with `ferry secret set DEPLOY_KEY --project gated --env default`"
    );

    // Set for the environment only: main gets it; feature/x (not deployed) gets nothing of
    // environment scope, so its run is refused.
    admin
        .secrets_set(
            SecretKind::Secret,
            "DEPLOY_KEY",
            &ScopeQuery::new(Some("gated"), Some("default")),
            &value("env-scoped-key-1"),
        )
        .await
        .unwrap();
    let run = admin
        .runs_create("gated", &RunCreate::default())
        .await
        .unwrap();
    server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    let page = admin.logs_get(run.id, 0, 1000).await.unwrap();
    assert!(
        page.lines.iter().any(|l| l.text == "key=*** feature=none"),
        "{:?}",
        page.lines
    );
    let feature = RunCreate {
        git_ref: Some("feature/x".into()),
        pipeline: None,
        ..Default::default()
    };
    let (status, err) = api_error(admin.runs_create("gated", &feature).await);
    assert_eq!(status, 422);
    assert!(
        err.message.ends_with(
            "runs of `feature/x` (not in source.branches) get no environment-scoped values"
        ),
        "{}",
        err.message
    );

    // A global value reaches the feature branch, and so does its branch-limited secret.
    admin
        .secrets_set(
            SecretKind::Secret,
            "DEPLOY_KEY",
            &ScopeQuery::default(),
            &value("global-key-2"),
        )
        .await
        .unwrap();
    admin
        .secrets_set(
            SecretKind::Secret,
            "FEATURE_ONLY",
            &ScopeQuery::default(),
            &value("feature-value"),
        )
        .await
        .unwrap();
    let run = admin.runs_create("gated", &feature).await.unwrap();
    server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    let page = admin.logs_get(run.id, 0, 1000).await.unwrap();
    assert!(
        page.lines.iter().any(|l| l.text == "key=*** feature=***"),
        "{:?}",
        page.lines
    );

    // Removing a secret a queued pipeline needs fails the next run before it starts.
    admin
        .secrets_delete(SecretKind::Secret, "DEPLOY_KEY", &ScopeQuery::default())
        .await
        .unwrap();
    let (status, _) = api_error(admin.runs_create("gated", &feature).await);
    assert_eq!(status, 422);
    server.stop().await;
}
