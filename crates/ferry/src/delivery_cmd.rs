//! Commands that move commits through environments and put decisions on the record:
//! retry, promote, rollback, approvals, history, events and the audit export.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ferry_api::{Client, Run};
use futures::StreamExt;

use crate::cli::{find_event_end, parse_event, print_json, short, wait_for};

macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// Reports a run a command started, and waits for it with `wait`.
pub(crate) async fn started(client: &Client, run: Run, wait: bool, json: bool) -> Result<ExitCode> {
    if wait {
        return wait_for(client, run.id, json).await;
    }
    if json {
        print_json(&run)?;
    } else {
        let envs = if run.options.environments.is_empty() {
            String::new()
        } else {
            format!(" through {}", run.options.environments.join(", "))
        };
        out!(
            "run {} (#{} of {}, {}) queued at {}{envs}",
            run.id,
            run.number,
            run.project,
            run.kind,
            short(&run.commit)
        );
        out!("follow it with: ferry logs -f {}", run.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry approvals`: what waits on me; `ferry approvals RUN --env E`: what it is about.
pub(crate) async fn approvals(
    client: &Client,
    run: Option<i64>,
    env: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let Some(run) = run else {
        let pending = client.approvals_pending().await?;
        if json {
            print_json(&pending)?;
        } else if pending.is_empty() {
            out!("nothing waits for your approval");
        } else {
            for p in &pending {
                out!(
                    "run {:>5}  {:<16} {:<12} {:<10} {} by {}  (ferry approvals {} --env {})",
                    p.run.id,
                    p.run.project,
                    p.run.pipeline,
                    p.environment,
                    short(&p.run.commit),
                    p.run.triggered_by,
                    p.run.id,
                    p.environment
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let env = match env {
        Some(env) => env,
        None => {
            let detail = client.runs_get(run).await?;
            match detail
                .stages
                .iter()
                .find(|s| s.kind == "approval" && s.status == "WaitingForApproval")
            {
                Some(s) => s.environment.clone(),
                None => bail!("run {run} waits for no approval; name the environment with --env"),
            }
        }
    };
    let view = client.approval_view(run, &env).await?;
    if json {
        print_json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = &view.run;
    out!(
        "run {} (#{} of {}, {}) in {}: {}",
        r.id,
        r.number,
        r.project,
        r.kind,
        view.environment,
        r.status
    );
    let author = r.commit_author.as_deref().unwrap_or("unknown author");
    out!(
        "  commit {} by {author}, triggered by {}",
        r.commit,
        r.triggered_by
    );
    if r.options.destroy {
        out!("  THIS RUN DESTROYS {}", view.environment);
    }
    if !r.options.targets.is_empty() {
        out!("  targets: {}", r.options.targets.join(", "));
    }
    if !r.options.replaces.is_empty() {
        out!("  replaces: {}", r.options.replaces.join(", "));
    }
    let who = if view.approvers.is_empty() {
        "anyone but the triggerer and the author".to_owned()
    } else {
        view.approvers.join(", ")
    };
    out!(
        "  needs {} approval(s) from {who}; times out after {}",
        view.required,
        humantime::format_duration(std::time::Duration::from_secs(view.timeout_seconds))
    );
    match &view.plan {
        Some(p) => {
            let state = p
                .state
                .as_ref()
                .map(|b| format!("lineage {} serial {}", b.lineage, b.serial))
                .unwrap_or_else(|| "no state yet".into());
            out!(
                "  plan +{} ~{} -{} (sha256 {}, against {state})",
                p.add,
                p.change,
                p.destroy,
                p.sha256
            );
            for res in &p.resources {
                out!("      {:<8} {}", res.action, res.address);
            }
        }
        None => out!("  no plan yet"),
    }
    for c in &view.checks {
        out!("  {} {}", c.stage, c.status);
        for a in &c.actions {
            out!("      {:<32} {}", a.name, a.status);
        }
    }
    if let Some(policy) = &view.policy {
        out!(
            "  policy: {} finding(s), fail_on {}{}",
            policy.findings.len(),
            policy.fail_on,
            if policy.blocked { ", BLOCKED" } else { "" }
        );
        for f in &policy.findings {
            let mark = if f.blocking {
                "BLOCKS"
            } else if f.waived {
                "waived"
            } else {
                "      "
            };
            out!(
                "    {mark} {:<8} {:<16} {}: {}",
                f.severity,
                f.rule,
                f.address,
                f.message
            );
        }
    }
    match (&view.deployed_commit, &view.diff_stat) {
        (Some(from), Some(stat)) => {
            out!(
                "  changes since {} (what {} runs now):",
                short(from),
                view.environment
            );
            for line in stat.lines() {
                out!("    {line}");
            }
        }
        (None, Some(stat)) => {
            out!("  changes in this commit:");
            for line in stat.lines() {
                out!("    {line}");
            }
        }
        _ => {}
    }
    for d in &view.decisions {
        out!("  {} by {}: {}", d.decision, d.actor, d.comment);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry history`: what each environment ran.
pub(crate) async fn history(
    client: &Client,
    project: &str,
    pipeline: Option<String>,
    env: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let list = client
        .deployments(project, pipeline.as_deref(), env.as_deref())
        .await?;
    if json {
        print_json(&list)?;
    } else if list.is_empty() {
        out!("no environment has completed a run yet");
    } else {
        out!(
            "{:<12} {:>6} {:<9} {:<12} {:<8} {}",
            "ENVIRONMENT",
            "RUN",
            "KIND",
            "COMMIT",
            "CHANGED",
            "COMPLETED"
        );
        for d in &list {
            out!(
                "{:<12} {:>6} {:<9} {:<12} {:<8} {}",
                d.environment,
                d.run_id,
                d.run_kind,
                short(&d.commit),
                if d.changed { "yes" } else { "no" },
                d.completed_at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(event: &ferry_api::Event, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, event)?;
        writeln!(out)?;
        return Ok(());
    }
    let place = [
        event.environment.as_deref(),
        event.stage.as_deref(),
        event.action.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("/");
    let reason = event
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    writeln!(
        out,
        "{} {:>6} {:<30} run {} ({}) {place} by {}{reason}",
        event.time, event.id, event.kind, event.run_id, event.project, event.actor
    )?;
    Ok(())
}

/// `ferry events [-f]`: lists the event log, then with `follow` streams new events.
pub(crate) async fn events(
    client: &Client,
    filter: &[(&str, String)],
    follow: bool,
    json: bool,
) -> Result<ExitCode> {
    let mut after = 0;
    loop {
        let mut query = filter.to_vec();
        query.push(("limit", "1000".into()));
        let page = client.events(after, &query).await?;
        for event in &page.events {
            print_event(event, json)?;
        }
        if page.events.is_empty() {
            break;
        }
        after = page.next_after;
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let url = format!("{}/api/v1/events/stream", client.base_url());
    let response = reqwest::Client::new()
        .get(&url)
        .query(filter)
        .query(&[("after", after)])
        .bearer_auth(client.token())
        .send()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    if !response.status().is_success() {
        client.events(after, filter).await?;
        bail!("cannot follow events: HTTP {}", response.status());
    }
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.context("reading the event stream")?);
        while let Some(end) = find_event_end(&buffer) {
            let message: Vec<u8> = buffer.drain(..end).collect();
            let (name, data) = parse_event(&String::from_utf8_lossy(&message));
            match name.as_str() {
                "message" => {}
                "shutdown" => bail!(
                    "the server is shutting down; run `ferry events -f` again once it is back"
                ),
                "error" => bail!("the server could not read the event log: {data}"),
                _ => {
                    let event: ferry_api::Event =
                        serde_json::from_str(&data).context("decoding an event")?;
                    print_event(&event, json)?;
                    std::io::stdout().lock().flush()?;
                }
            }
        }
    }
    bail!("the event stream ended")
}

/// `ferry audit export`: the chain as JSON lines, one entry per line, in order.
pub(crate) async fn audit_export(
    client: &Client,
    filter: &[(&str, Option<String>)],
    file: Option<&Path>,
) -> Result<ExitCode> {
    let query: Vec<(&str, String)> = filter
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .chain([("limit", "1000".to_owned())])
        .collect();
    let mut sink: Box<dyn Write> = match file {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = client.audit(after, &query).await?;
        if page.entries.is_empty() {
            break;
        }
        for entry in &page.entries {
            serde_json::to_writer(&mut sink, entry)?;
            writeln!(sink)?;
            count += 1;
        }
        after = page.next_after;
    }
    sink.flush()?;
    if let Some(path) = file {
        eprintln!("wrote {count} audit entries to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
