//! Flows: limits on flows and steps, shared script limits, data passing,
//! for-each, failure, crash and cancel, with several worker processes.

use std::time::Duration;

use sluice_producer::{Client, Job, JobId, JobRequest, RunsQuery};
use sluice_tests::*;

const CONFIG: &str = r#"
[worker]
concurrency = 8
lease_s = 1

[scripts."f/shared"]
command = ["sh", "-c", "sleep 0.05; cat"]
concurrency = { max = 1, window_s = 0.2 }

[scripts."f/fail"]
command = ["sh", "-c", "echo step exploded >&2; exit 4"]
max_attempts = 1

[flows."f/pair"]
[[flows."f/pair".steps]]
id = "fetch"
command = ["cat"]
[[flows."f/pair".steps]]
id = "sync"
command = ["cat"]
args = { acct = "$results.fetch.acct", prev = "$previous_result.acct", fixed = 1 }
concurrency = { max = 2, window_s = 1 }

[flows."f/solo"]
concurrency = { max = 1, window_s = 0 }
[[flows."f/solo".steps]]
id = "a"
command = ["sleep", "0.1"]
[[flows."f/solo".steps]]
id = "b"
command = ["sleep", "0.1"]

[flows."f/uses_shared"]
[[flows."f/uses_shared".steps]]
id = "s"
script = "f/shared"

[flows."f/each"]
[[flows."f/each".steps]]
id = "each"
for_each = "$flow_input.items"
parallelism = 3
command = ["sh", "-c", "sleep 0.1; cat"]
concurrency = { max = 2, window_s = 0 }

[flows."f/failing"]
concurrency = { max = 1, window_s = 30 }
[[flows."f/failing".steps]]
id = "ok"
command = ["true"]
[[flows."f/failing".steps]]
id = "boom"
script = "f/fail"
[[flows."f/failing".steps]]
id = "never"
command = ["true"]

[flows."f/slow"]
[[flows."f/slow".steps]]
id = "long"
command = ["sh", "-c", "sleep 1; echo '\"done\"'"]
[[flows."f/slow".steps]]
id = "after"
command = ["cat"]
args = { got = "$previous_result" }

[flows."f/needs"]
[[flows."f/needs".steps]]
id = "use"
command = ["cat"]
args = { a = "$flow_input.account" }

[flows."f/forever"]
concurrency = { max = 1, window_s = 0 }
[[flows."f/forever".steps]]
id = "wait"
command = ["sleep", "300"]
"#;

async fn start(client: &Client, path: &str, args: serde_json::Value, n: usize) -> Vec<JobId> {
    let reqs: Vec<JobRequest> = (0..n)
        .map(|_| JobRequest::new(path, args.clone()))
        .collect();
    client.enqueue_batch(&reqs).await.unwrap()
}

/// Every job of one concurrency key, oldest first.
async fn jobs_of_key(client: &Client, key: &str) -> Vec<Job> {
    let q = RunsQuery {
        concurrency_key: Some(key.into()),
        limit: 10_000,
        ..Default::default()
    };
    let ids: Vec<JobId> = client
        .runs(&q)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|j| j.id)
        .collect();
    client
        .jobs(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

/// The one step job of a flow run with this step id, once it exists.
async fn step_job(client: &Client, flow_id: &str, step: &str) -> Job {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let all = client
            .runs(&RunsQuery {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<JobId> = all.into_iter().map(|j| j.id).collect();
        let found = client
            .jobs(&ids)
            .await
            .unwrap()
            .into_iter()
            .flatten()
            .find(|j| j.parent.as_deref() == Some(flow_id) && j.step.as_deref() == Some(step));
        if let Some(j) = found {
            return j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no step {step} for flow {flow_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_runs_hold_the_step_limit_and_pass_data_between_steps() {
    let env = TestEnv::new(CONFIG);
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let reqs: Vec<JobRequest> = (0..10)
        .map(|i| JobRequest::new("f/pair", json!({ "acct": i })))
        .collect();
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let flows = env.finish(&client, &ids).await;
    for (i, f) in flows.iter().enumerate() {
        assert_eq!(f.status, "succeeded", "{}", env.logs());
        assert_eq!(f.result, Some(json!({"acct": i, "prev": i, "fixed": 1})));
    }
    let steps = jobs_of_key(&client, "default/script/f/pair/sync").await;
    assert_eq!(steps.len(), 10);
    let held = max_slots_held(&steps);
    assert!(held <= 2, "{held} sync steps held slots at once, max is 2");
    assert_eq!(held, 2);
    let out = env.sluice(&["status", &ids[0], "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"][0]["id"], "fetch");
    assert_eq!(v["steps"][1]["status"], "succeeded");
    assert_eq!(
        v["steps"][1]["result"],
        json!({"acct": 0, "prev": 0, "fixed": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_limited_to_one_never_overlaps_itself() {
    let env = TestEnv::new(CONFIG);
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let ids = start(&client, "f/solo", json!({}), 3).await;
    let flows = env.finish(&client, &ids).await;
    assert!(flows.iter().all(|f| f.status == "succeeded"));
    assert_eq!(
        max_slots_held(&flows),
        1,
        "flow runs overlapped: {flows:#?}"
    );
    assert_started_in_order(&flows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_running_a_script_shares_that_scripts_limit() {
    let env = TestEnv::new(CONFIG);
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let flows = start(&client, "f/uses_shared", json!({}), 3).await;
    let alone = start(&client, "f/shared", json!({}), 3).await;
    env.finish(&client, &[flows, alone].concat()).await;
    let all = jobs_of_key(&client, "default/script/f/shared").await;
    assert_eq!(
        all.len(),
        6,
        "three steps and three standalone runs share the key"
    );
    assert_eq!(all.iter().filter(|j| j.step.is_some()).count(), 3);
    let held = max_slots_held(&all);
    assert!(held <= 1, "{held} slots of a max-1 key held at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_respects_parallelism_and_the_step_limit() {
    let env = TestEnv::new(CONFIG);
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let items: Vec<serde_json::Value> = (0..10).map(|i| json!({ "n": i })).collect();
    let ids = start(&client, "f/each", json!({ "items": items }), 1).await;
    let flow = env.finish(&client, &ids).await.remove(0);
    assert_eq!(flow.status, "succeeded", "{flow:?}");
    let expected: Vec<serde_json::Value> = (0..10)
        .map(|i| json!({"item": {"n": i}, "index": i}))
        .collect();
    assert_eq!(flow.result, Some(json!(expected)));
    let iters = jobs_of_key(&client, "default/script/f/each/each").await;
    assert_eq!(iters.len(), 10);
    assert!(
        max_slots_held(&iters) <= 2,
        "the step's limit of 2 was exceeded"
    );
    // parallelism: at no moment more than 3 iterations existed unfinished.
    let most = iters
        .iter()
        .map(|a| {
            let t = a.created_at.unwrap();
            iters
                .iter()
                .filter(|b| b.created_at.unwrap() <= t && t < b.ended_at.unwrap())
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 3, "{most} iterations in flight, parallelism is 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_flow_and_frees_its_slot_after_the_window() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = start(&client, "f/failing", json!({}), 1).await;
    let flow = env.finish(&client, &ids).await.remove(0);
    assert_eq!(flow.status, "failed");
    let reason = flow.error.clone().unwrap();
    assert!(
        reason.contains("boom") && reason.contains("step exploded"),
        "{reason}"
    );
    let all = client
        .runs(&RunsQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids_all: Vec<JobId> = all.iter().map(|j| j.id.clone()).collect();
    let steps: Vec<String> = client
        .jobs(&ids_all)
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .filter_map(|j| j.step)
        .collect();
    assert!(
        !steps.contains(&"never".to_string()),
        "a step after the failure ran: {steps:?}"
    );
    let limits = client.limits(Some("flow:default/f/failing")).await.unwrap();
    assert_eq!(
        limits[0].held, 1,
        "the failed flow's slot is held for its window"
    );
    assert_eq!(
        limits[0].next_free_at,
        Some(flow.ended_at.unwrap() + 30_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_flow_loses_nothing() {
    let env = TestEnv::new(CONFIG);
    let victim = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = start(&client, "f/slow", json!({}), 1).await;
    let long = step_job(&client, &ids[0], "long").await;
    wait_running(&client, std::slice::from_ref(&long.id), 1).await;
    victim.signal("KILL");
    let _rescuer = env.worker(&[], &[]);
    let flow = env.finish(&client, &ids).await.remove(0);
    assert_eq!(flow.status, "succeeded", "{}", env.logs());
    assert_eq!(flow.result, Some(json!({"got": "done"})));
    let long = client.job(&long.id).await.unwrap().unwrap();
    assert_eq!(
        (long.status.as_str(), long.attempt),
        ("succeeded", 2),
        "the killed step ran again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_flow_cancels_its_steps_and_frees_its_slot() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = start(&client, "f/forever", json!({}), 1).await;
    let step = step_job(&client, &ids[0], "wait").await;
    wait_running(&client, std::slice::from_ref(&step.id), 1).await;
    assert_eq!(
        client.cancel(&ids[0]).await.unwrap(),
        sluice_producer::CancelOutcome::Cancelled
    );
    let flow = env.finish(&client, &ids).await.remove(0);
    assert_eq!(flow.status, "cancelled");
    let step = env
        .finish(&client, std::slice::from_ref(&step.id))
        .await
        .remove(0);
    assert_eq!(step.status, "cancelled");
    let limits = client.limits(Some("flow:default/f/forever")).await.unwrap();
    assert_eq!(limits[0].held, 0, "the flow's slot is free again");
    // So the next run is admitted at once.
    let next = start(&client, "f/forever", json!({}), 1).await;
    let step = step_job(&client, &next[0], "wait").await;
    wait_running(&client, std::slice::from_ref(&step.id), 1).await;
    client.cancel(&next[0]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_reference_fails_the_run_naming_it() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = start(&client, "f/needs", json!({"other": 1}), 1).await;
    let flow = env.finish(&client, &ids).await.remove(0);
    assert_eq!(flow.status, "failed");
    let reason = flow.error.unwrap();
    assert!(
        reason.contains("$flow_input.account") && reason.contains("use"),
        "{reason}"
    );
    let ok = start(&client, "f/needs", json!({"account": "a-1"}), 1).await;
    let flow = env.finish(&client, &ok).await.remove(0);
    assert_eq!(flow.result, Some(json!({"a": "a-1"})));
}
