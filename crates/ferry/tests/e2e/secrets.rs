//! `ferry secret` and `ferry param` against the real binary and server: values go in on
//! stdin (never argv), come back for parameters only, and bad input exits 2 with a clear
//! message.

use std::io::Write as _;
use std::process::Stdio;

use crate::util::{Out, Server};

/// Runs the CLI with `input` on stdin.
pub(crate) fn cli_stdin(server: &Server, args: &[&str], input: &str) -> Out {
    let mut child = server
        .command(args, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("ferry finishes");
    Out {
        code: crate::util::exit_code(out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const CANARY: &str = "cli-canary-4f9e2a";

#[test]
fn secrets_go_in_on_stdin_and_never_come_out() {
    let server = Server::start();
    let repo = crate::util::repo_with(&[("main.tf", "")]);
    server.add_project("net", &repo);

    let set = cli_stdin(
        &server,
        &["secret", "set", "DB_PASSWORD"],
        &format!("{CANARY}\n"),
    );
    assert_eq!(set.code, 0, "{set:?}");
    assert_eq!(set.stdout, "secret `DB_PASSWORD` (global) set: version 1\n");
    let set = cli_stdin(
        &server,
        &[
            "secret",
            "set",
            "DB_PASSWORD",
            "--project",
            "net",
            "--env",
            "prod",
            "-o",
            "json",
        ],
        CANARY,
    );
    assert_eq!(set.code, 0, "{set:?}");
    assert_eq!(set.json()["environment"], "prod");

    let list = server.cli(&["secret", "list"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.stdout.lines().count(), 2, "{list:?}");
    assert!(
        list.stdout.contains("project net environment prod"),
        "{list:?}"
    );
    let json = server.cli(&["secret", "list", "-o", "json"]);
    assert_eq!(json.json().as_array().unwrap().len(), 2);
    for out in [&set, &list, &json] {
        assert!(!out.stdout.contains(CANARY) && !out.stderr.contains(CANARY));
    }
    // There is no command that prints a secret.
    let get = server.cli(&["secret", "get", "DB_PASSWORD"]);
    assert_eq!(get.code, 2);
    assert!(!get.stdout.contains(CANARY));

    // Bad input: empty, too short, bad name, environment without project, unknown project.
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["secret", "set", "EMPTY"],
            "\n",
            "the secret value is empty",
        ),
        (
            &["secret", "set", "SHORT"],
            "abc",
            "at least 4 are required",
        ),
        (
            &["secret", "set", "bad-name"],
            CANARY,
            "invalid name `bad-name`",
        ),
        (
            &["secret", "set", "X", "--env", "prod"],
            CANARY,
            "unknown scope",
        ),
        (
            &["secret", "set", "X", "--project", "nope"],
            CANARY,
            "project `nope` not found",
        ),
        (&["secret", "rm", "NOT_THERE"], "", "not found"),
    ];
    for (args, input, message) in cases {
        let out = cli_stdin(&server, args, input);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:?}");
        assert!(!out.stderr.contains(CANARY), "{args:?}: {out:?}");
    }

    let rm = server.cli(&[
        "secret",
        "rm",
        "DB_PASSWORD",
        "--project",
        "net",
        "--env",
        "prod",
    ]);
    assert_eq!(rm.code, 0, "{rm:?}");
    assert_eq!(server.cli(&["secret", "list"]).stdout.lines().count(), 1);

    // Parameters are readable, and may be given on the command line.
    assert_eq!(
        server
            .cli(&["param", "set", "REGION", "eu-west-1", "--project", "net"])
            .code,
        0
    );
    let set = cli_stdin(&server, &["param", "set", "ZONE"], "b\n");
    assert_eq!(set.code, 0, "{set:?}");
    let get = server.cli(&["param", "get", "REGION", "--project", "net"]);
    assert_eq!(get.stdout, "eu-west-1\n", "{get:?}");
    assert_eq!(server.cli(&["param", "get", "ZONE"]).stdout, "b\n");
    assert_eq!(server.cli(&["param", "list"]).stdout.lines().count(), 2);
    assert_eq!(server.cli(&["param", "rm", "ZONE"]).code, 0);
    assert_eq!(server.cli(&["param", "get", "ZONE"]).code, 2);
}

const RUN_CANARY: &str = "cli-run-canary-8d1b7e";

#[test]
fn a_run_s_secret_is_masked_in_what_the_cli_shows_and_in_the_server_log() {
    let server = Server::start();
    let yaml = "version: 1\nname: leaky\nterraform: { dir: . }\nsecrets:\n  - { name: API_KEY, as: TF_VAR_api_key }\nstages:\n  test:\n    - 'echo \"key: $TF_VAR_api_key\"; printf %s \"$TF_VAR_api_key\" | base64'\n";
    let tf = "variable \"api_key\" {\n  type = string\n}\n\nresource \"terraform_data\" \"k\" {\n  input = var.api_key\n}\n\noutput \"k\" {\n  value = var.api_key\n}\n";
    let repo = crate::util::repo_with(&[("ferry.yaml", yaml), ("main.tf", tf)]);
    server.add_project("leaky", &repo);

    // Referenced but not set: `ferry run` is refused, naming the secret and scopes.
    let out = server.cli(&["run", "leaky"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("secret `API_KEY` is not set for project leaky environment default"),
        "{out:?}"
    );

    let set = cli_stdin(
        &server,
        &["secret", "set", "API_KEY", "--project", "leaky"],
        RUN_CANARY,
    );
    assert_eq!(set.code, 0, "{set:?}");
    let run = server.trigger("leaky", &[]);
    server.wait_status(run, "Succeeded", std::time::Duration::from_secs(120));

    let logs = server.cli(&["logs", &run.to_string()]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(logs.stdout.contains("key: ***"), "{}", logs.stdout);
    assert!(logs.stdout.contains("k = \"***\""), "{}", logs.stdout);
    let show = server.cli(&["show", &run.to_string()]);
    let list = server.cli(&["secret", "list", "-o", "json"]);
    assert_eq!(list.json()[0]["last_used_run"], run);
    for out in [&logs, &show, &list] {
        assert!(!out.stdout.contains(RUN_CANARY) && !out.stderr.contains(RUN_CANARY));
    }
    // Nor in the server's own log.
    assert!(!server.logs().contains(RUN_CANARY));
}
