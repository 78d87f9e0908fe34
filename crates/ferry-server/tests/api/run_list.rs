//! Listing runs: newest first, paged with `limit` and `next_before` so a client walks every
//! run exactly once, and filtered by status and project.

use std::collections::BTreeSet;

use ferry_api::RunCreate;

use crate::common::{prod_only_yaml, TestServer, RUN_TIMEOUT};

fn ids(page: &ferry_api::RunPage) -> Vec<i64> {
    page.runs.iter().map(|r| r.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_newest_first_in_pages_and_filtered_by_status() {
    let mut server = TestServer::start().await;
    server
        .project(
            "r",
            &[
                ("ferry.yaml", &prod_only_yaml("r", "queued")),
                ("main.tf", &ferry_test_support::terraform_data_config(1)),
            ],
        )
        .await;
    server
        .project(
            "other",
            &[
                ("ferry.yaml", &prod_only_yaml("other", "queued")),
                ("main.tf", ""),
            ],
        )
        .await;

    // Five runs: the first holds prod waiting for approval, the others queue behind it; two
    // of those are cancelled.
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            server
                .admin
                .runs_create("r", &RunCreate::default())
                .await
                .unwrap()
                .id,
        );
    }
    server
        .wait_status(created[0], "WaitingForApproval", RUN_TIMEOUT)
        .await;
    for &i in &[1, 3] {
        assert_eq!(
            server.admin.runs_cancel(created[i]).await.unwrap().status,
            "Cancelled"
        );
    }
    let numbers: Vec<i64> = server
        .admin
        .runs_list(Some("r"), None, 500, None)
        .await
        .unwrap()
        .runs
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(
        numbers,
        [5, 4, 3, 2, 1],
        "numbers count per project, newest first"
    );

    // Walk with pages of two.
    let mut newest_first = created.clone();
    newest_first.reverse();
    let mut walked = Vec::new();
    let mut before = None;
    let mut pages = Vec::new();
    loop {
        let page = server.admin.runs_list(None, None, 2, before).await.unwrap();
        assert!(page.runs.len() <= 2);
        walked.extend(ids(&page));
        pages.push(ids(&page));
        match page.next_before {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    page.runs.last().map(|r| r.id),
                    "next_before is the last id of the page"
                );
                before = Some(next);
            }
            None => break,
        }
        assert!(pages.len() <= 5, "paging does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        [
            newest_first[0..2].to_vec(),
            newest_first[2..4].to_vec(),
            newest_first[4..].to_vec()
        ]
    );
    assert_eq!(walked, newest_first);
    assert_eq!(
        walked.iter().collect::<BTreeSet<_>>().len(),
        5,
        "duplicates: {walked:?}"
    );

    // A page that ends exactly at the last run says so (no `next_before` in the JSON).
    let last = server
        .call(
            "GET",
            &format!("/api/v1/runs?limit=1&before={}", created[1]),
            None,
        )
        .await;
    assert_eq!(last.status, 200, "{}", last.text);
    assert_eq!(last.json["runs"].as_array().map(Vec::len), Some(1));
    assert!(last.json.get("next_before").is_none(), "{}", last.text);

    // Status filters.
    let cancelled = server
        .admin
        .runs_list(None, Some("Cancelled"), 50, None)
        .await
        .unwrap();
    assert_eq!(ids(&cancelled), [created[3], created[1]]);
    assert!(cancelled
        .runs
        .iter()
        .all(|r| r.status == "Cancelled" && r.finished_at.is_some()));
    let queued = server
        .admin
        .runs_list(None, Some("Queued"), 50, None)
        .await
        .unwrap();
    assert_eq!(ids(&queued), [created[4], created[2]]);
    assert!(
        queued
            .runs
            .iter()
            .all(|r| r.waiting_for.as_deref() == Some("prod")),
        "{queued:?}"
    );
    let waiting = server
        .admin
        .runs_list(Some("r"), Some("WaitingForApproval"), 50, None)
        .await
        .unwrap();
    assert_eq!(ids(&waiting), [created[0]]);
    let paged = server
        .admin
        .runs_list(None, Some("Queued"), 1, None)
        .await
        .unwrap();
    assert_eq!(
        (ids(&paged), paged.next_before),
        (vec![created[4]], Some(created[4]))
    );
    let rest = server
        .admin
        .runs_list(None, Some("Queued"), 1, paged.next_before)
        .await
        .unwrap();
    assert_eq!((ids(&rest), rest.next_before), (vec![created[2]], None));
    assert!(server
        .admin
        .runs_list(None, Some("Succeeded"), 50, None)
        .await
        .unwrap()
        .runs
        .is_empty());

    // Project filter.
    assert!(server
        .admin
        .runs_list(Some("other"), None, 50, None)
        .await
        .unwrap()
        .runs
        .is_empty());
    assert_eq!(
        server
            .admin
            .runs_list(Some("r"), None, 50, None)
            .await
            .unwrap()
            .runs
            .len(),
        5
    );
    server.stop().await;
}
