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
