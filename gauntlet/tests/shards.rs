//! Load beyond one machine, rehearsed on one: N `gauntlet-load load --shard i/N` workers, each
//! in its own container (`gauntlet-load:dev`, `ci/image/build --load`), drive the engine
//! container (`gauntlet-engine:dev`) over a Docker network of the test's own, as the Indexed
//! Job of `ci/k8s/load-shards.yaml` drives the engine Service; then the merge Job of
//! `ci/k8s/load-merge.yaml` runs as written there (its image, user and arguments) over the
//! bind-mounted results directory. Skipped with a reason when Docker or an
//! image is absent; the `shards` CI lane builds both images and sets
//! `GAUNTLET_REQUIRE_SHARDS=1`, so there a missing one fails instead. Every container and the
//! network carry the label `org.gauntlet.test=shards` and are removed however the test ends.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use gauntlet_load::histogram::Latencies;
use gauntlet_load::shard::ShardFile;
use gauntlet_testkit::docker::{
    Removed, docker, http_status as get, mapped_port, unique, wait_exit,
};
use gauntlet_testkit::{code, text};

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet");

/// Labels every container and network the test creates.
const LABEL: &str = "org.gauntlet.test=shards";

/// Workers, and the whole run's rate (each worker sends a third of it).
const SHARDS: u32 = 3;
const RATE: u32 = 1500;

/// The two images, or why they are not there (and the test is skipped).
fn images() -> Option<(String, String)> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let engine = env("GAUNTLET_ENGINE_IMAGE", "gauntlet-engine:dev");
    let load = env("GAUNTLET_LOAD_IMAGE", "gauntlet-load:dev");
    let mut why = Vec::new();
    for (image, flag) in [(&engine, ""), (&load, " --load")] {
        match Command::new("docker")
            .args(["image", "inspect", image])
            .output()
        {
            Err(e) => why.push(format!("docker cannot run: {e}")),
            Ok(out) if !out.status.success() => why.push(format!(
                "image {image} is not built (ci/image/build{flag} builds it)"
            )),
            Ok(_) => {}
        }
    }
    if why.is_empty() {
        return Some((engine, load));
    }
    let why = why.join("; ");
    assert!(
        std::env::var_os("GAUNTLET_REQUIRE_SHARDS").is_none(),
        "GAUNTLET_REQUIRE_SHARDS is set but {why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// The merge Job's container of `ci/k8s/load-merge.yaml`: its image, its user and its
/// arguments, as Kubernetes would run them.
fn merge_job() -> (String, String, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/k8s/load-merge.yaml");
    let job: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let user = format!(
        "{}:{}",
        pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    );
    let args = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    (container["image"].as_str().unwrap().to_owned(), user, args)
}

fn merge(dir: &Path, files: &[&str], report: &str) -> Output {
    let mut args = vec!["report", "merge"];
    args.extend_from_slice(files);
    args.extend_from_slice(&["--report-dir", report]);
    gauntlet_testkit::run_cli(BIN, &args, dir).unwrap()
}

#[test]
fn sharded_workers_in_containers_merge_into_exactly_their_union_at_the_planned_rate() {
    let Some((engine_image, load_image)) = images() else {
        return;
    };
    let network = Removed::network(unique("gauntlet-shards-net"));
    let made = docker(&["network", "create", "--label", LABEL, &network.name]);
    assert!(made.status.success(), "{}", text(&made.stderr));

    // The engine, as the Service of ci/k8s/engine.yaml would front it: reached by name on the
    // network by the workers, and through 127.0.0.1 and its mapped port by this test.
    let engine = Removed::container(unique("gauntlet-shards-engine"));
    let run = docker(&[
        "run",
        "--detach",
        "--name",
        &engine.name,
        "--label",
        LABEL,
        "--network",
        &network.name,
        "--publish",
        "127.0.0.1::8080",
        &engine_image,
    ]);
    assert!(run.status.success(), "docker run: {}", text(&run.stderr));
    let port = mapped_port(&engine.name, "8080/tcp");
    let started = Instant::now();
    while get(&port, "/v2/health/ready") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "engine not ready after 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The results volume: the workers run as nobody (the image's user) and write here.
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    // Latency ceilings wide: three workers, the engine and the host's other work share two
    // cores; this test is about exact merging and the rate, not the engine's latency.
    std::fs::write(
        results.join("gauntlet.toml"),
        "[profile.default.load]\nlate-after = \"50ms\"\nmax-late-fraction = 0.2\n\
         p50 = \"1s\"\np95 = \"1s\"\np99 = \"1s\"\np999 = \"1s\"\n",
    )
    .unwrap();

    // One shared start for every worker, late enough for all of them to be started (the
    // Indexed Job's START_AT): each worker then sends requests k ≡ i (mod N) of one schedule.
    let start_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 4;
    let mount = format!("{}:/results", results.display());
    let target = format!("http://{}:8080", engine.name);
    let workers: Vec<Removed> = (0..SHARDS)
        .map(|i| {
            let worker = Removed::container(unique(&format!("gauntlet-shards-worker-{i}")));
            let run = docker(&[
                "run",
                "--detach",
                "--name",
                &worker.name,
                "--label",
                LABEL,
                "--network",
                &network.name,
                "--volume",
                &mount,
                &load_image,
                "load",
                "--config",
                "/results/gauntlet.toml",
                "--target",
                &target,
                "--rate",
                &RATE.to_string(),
                "--duration",
                "5s",
                "--warm-up",
                "1s",
                "--shard",
                &format!("{i}/{SHARDS}"),
                "--start-at",
                &start_at.to_string(),
                "--out",
                &format!("/results/shard-{i}.json"),
                "--raw-latencies",
                &format!("/results/raw-{i}.txt"),
            ]);
            assert!(run.status.success(), "docker run: {}", text(&run.stderr));
            worker
        })
        .collect();
    for worker in &workers {
        let (exit, logs) = wait_exit(&worker.name, Duration::from_secs(60));
        eprintln!("{}: {}", worker.name, logs.trim());
        assert_eq!(exit, "0", "{} exited {exit}: {logs}", worker.name);
    }

    // The merge Job, as ci/k8s/load-merge.yaml has it, over the same volume. Its image is the
    // workers' (the manifest names gauntlet-load:dev; the test's own tag stands in for it).
    let (job_image, user, args) = merge_job();
    assert_eq!(
        job_image, "gauntlet-load:dev",
        "the merge runs the workers' image"
    );
    let merger = Removed::container(unique("gauntlet-shards-merge"));
    let mut run = vec![
        "run",
        "--detach",
        "--name",
        &merger.name,
        "--label",
        LABEL,
        "--user",
        &user,
        "--network",
        "none",
        "--volume",
        &mount,
        &load_image,
    ];
    run.extend(args.iter().map(String::as_str));
    let started = docker(&run);
    assert!(
        started.status.success(),
        "docker run: {}",
        text(&started.stderr)
    );
    let (exit, logs) = wait_exit(&merger.name, Duration::from_secs(60));
    eprintln!("{}: {}", merger.name, logs.trim());
    assert_eq!(exit, "0", "the merge Job exited {exit}: {logs}");
    let merged = ShardFile::read(&results.join("report/merged.json")).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("report/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["meta"]["tool"], "gauntlet-load");
    assert!(
        report["meta"]["git_commit"].is_string(),
        "the image records its commit: {}",
        report["meta"]
    );
    for name in ["junit.xml", "summary.md", "report.html"] {
        assert!(results.join("report").join(name).is_file(), "{name}");
    }

    let files: Vec<String> = (0..SHARDS)
        .map(|i| format!("results/shard-{i}.json"))
        .collect();
    let names: Vec<&str> = files.iter().map(String::as_str).collect();

    // The union of the shards, added here histogram by histogram and counter by counter...
    let shards: Vec<ShardFile> = files
        .iter()
        .map(|f| ShardFile::read(&dir.path().join(f)).unwrap())
        .collect();
    let mut union = Latencies::new();
    for s in &shards {
        union.add(&s.latencies).unwrap();
    }
    assert_eq!(
        merged.latencies, union,
        "merged histogram = the shards' union"
    );
    assert_eq!(
        merged.counters.ok,
        shards.iter().map(|s| s.counters.ok).sum::<u64>()
    );
    assert_eq!(
        merged.counters.scheduled,
        shards.iter().map(|s| s.counters.scheduled).sum::<u64>()
    );
    // ...and one histogram of every raw sample the workers recorded, read back from the volume.
    let mut reference = Latencies::new();
    for i in 0..SHARDS {
        let raw = std::fs::read_to_string(results.join(format!("raw-{i}.txt"))).unwrap();
        for line in raw.lines() {
            reference.record(line.parse().unwrap());
        }
    }
    assert_eq!(
        merged.latencies, reference,
        "merged histogram = every sample"
    );
    for q in [0.5, 0.99, 0.999, 1.0] {
        assert_eq!(merged.latencies.quantile(q), reference.quantile(q), "q {q}");
    }

    // The whole schedule, all shards together: the planned rate over the 4 s measured window,
    // and an achieved rate within 2 % of it.
    let planned = f64::from(RATE);
    assert_eq!(
        merged.counters.scheduled,
        u64::from(RATE) * 4,
        "every request of one schedule, each sent by one shard"
    );
    assert!(
        (merged.target_rate - planned).abs() < 1.0,
        "planned {planned}, merged target {}",
        merged.target_rate
    );
    let achieved = merged.measurement().achieved_rate();
    eprintln!(
        "figure: {SHARDS} containers, planned {planned:.0} req/s, merged achieved {achieved:.1} \
         req/s, p99 {} µs",
        merged.latencies.quantile(0.99)
    );
    assert!(
        (achieved - planned).abs() <= planned * 0.02,
        "merged achieved {achieved:.1} req/s is not within 2 % of the planned {planned}"
    );

    // The merge refuses shard files that do not make one run: a worker whose --start-at
    // differed (rewritten here) and a missing worker are exit 2, nothing merged.
    let mut late = shards[SHARDS as usize - 1].clone();
    late.started_at += Duration::from_secs(1);
    late.write(&dir.path().join("late.json")).unwrap();
    let mut skewed = names.clone();
    skewed[SHARDS as usize - 1] = "late.json";
    let out = merge(dir.path(), &skewed, "skewed");
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--start-at"),
        "{}",
        text(&out.stderr)
    );
    let out = merge(dir.path(), &names[..SHARDS as usize - 1], "partial");
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("missing shards {}/{SHARDS}", SHARDS - 1)),
        "{}",
        text(&out.stderr)
    );

    drop(merger);
    drop(workers);
    drop(engine);
    drop(network);
    let left = docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={LABEL}"),
    ]);
    let nets = docker(&[
        "network",
        "ls",
        "--quiet",
        "--filter",
        &format!("label={LABEL}"),
    ]);
    assert!(
        text(&left.stdout).trim().is_empty() && text(&nets.stdout).trim().is_empty(),
        "left behind: containers {:?}, networks {:?}",
        text(&left.stdout),
        text(&nets.stdout)
    );
}

/// Engine start to ready in a container, two ways: from `docker start` of a created container
/// to the first 200 on /v2/health/ready through 127.0.0.1 and its mapped port (Docker's own
/// setup of the container included), and from the engine process's start (Docker's
/// `State.StartedAt`) to that same 200. Five starts, printed as figures with the load
/// average; a start that never gets ready fails.
#[test]
fn the_engine_container_is_ready_soon_after_docker_start() {
    let Some((engine_image, _)) = images() else {
        return;
    };
    let mut took = Vec::new();
    let mut process = Vec::new();
    for _ in 0..5 {
        // A fixed host port, so that no `docker port` call sits between start and the probes.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let engine = Removed::container(unique("gauntlet-shards-start"));
        let publish = format!("127.0.0.1:{port}:8080");
        let create = docker(&[
            "create",
            "--name",
            &engine.name,
            "--label",
            LABEL,
            "--publish",
            &publish,
            &engine_image,
        ]);
        assert!(create.status.success(), "{}", text(&create.stderr));
        let started = Instant::now();
        let start = docker(&["start", &engine.name]);
        assert!(start.status.success(), "{}", text(&start.stderr));
        while get(&port, "/v2/health/ready") != Some(200) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not ready 10 s after docker start"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let ready_at = std::time::SystemTime::now();
        took.push(started.elapsed().as_millis());
        let inspect = docker(&["inspect", "--format", "{{.State.StartedAt}}", &engine.name]);
        assert!(inspect.status.success(), "{}", text(&inspect.stderr));
        let process_start = humantime::parse_rfc3339(text(&inspect.stdout).trim())
            .unwrap_or_else(|e| panic!("State.StartedAt {:?}: {e}", text(&inspect.stdout)));
        let since_process = ready_at
            .duration_since(process_start)
            .expect("the engine process started before it answered");
        process.push(since_process.as_millis());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "figure: docker start to ready {took:?} ms (min {}, max {}); load average {load}",
        took.iter().min().unwrap(),
        took.iter().max().unwrap(),
    );
    eprintln!(
        "figure: engine process start (State.StartedAt) to ready {process:?} ms (min {}, max {}); load average {load}",
        process.iter().min().unwrap(),
        process.iter().max().unwrap(),
    );
}
