//! Journals in S3 (`--journal s3://...`) against the lab's real S3 servers
//! (s3s-fs and moto): the S3 copy is byte-identical to the local one and
//! passes `audit verify`; a run SIGKILLed on machine A (its own state dir
//! and HOME) is resumed from S3 by machine B and finishes with no step done
//! twice; a paused A (SIGSTOP) that B took over is fenced when it goes on;
//! `runbook runs --journal` lists the runs there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runbook_lab::{Lab, S3Kind};

use crate::harness::{Scratch, binary};

/// The audit key both machines share (an S3 journal requires one).
const AUDIT_KEY: &str = "lab-shared-audit-key-0123456789abcdef";

/// Six steps appending their names to `out`; step 4 first waits for the
/// file `gate` (after touching `gate.waiting`), so a test can stop the run
/// there, after three steps whose journal lines are in S3.
const SIX_STEPS: &str = r#"//! Six steps that append their names
//! @param out required  file to append to
//! @param gate required  file step 4 waits for
let out = param("out");
let gate = param("gate");
for i in 1..=6 {
    step("s" + i, || {
        if i == 4 {
            shell::run(["sh", "-c", "touch \"$1.waiting\"; while [ ! -f \"$1\" ]; do sleep 0.05; done", "sh", gate]);
        }
        shell::run(["sh", "-c", "echo \"$1\" >> \"$2\"", "sh", "s" + i, out]);
    });
}
"#;

fn lab(kind: S3Kind) -> Lab {
    Lab::builder()
        .ssh_hosts(0)
        .postgres(false)
        .s3(kind)
        .start()
        .expect("the lab starts")
}

/// A machine: its own state dir and HOME.
struct Machine {
    state: PathBuf,
    home: PathBuf,
}

impl Machine {
    fn new(scratch: &Scratch, name: &str) -> Machine {
        let state = scratch.path().join(format!("{name}-state"));
        let home = scratch.path().join(format!("{name}-home"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Machine { state, home }
    }

    fn command(&self, lab: &Lab, scratch: &Scratch, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command.args(args).current_dir(scratch.path());
        command.envs(lab.env());
        command
            .env("RUNBOOK_STATE_DIR", &self.state)
            .env("XDG_STATE_HOME", &self.state)
            .env("HOME", &self.home)
            .env("RUNBOOK_AUDIT_KEY", AUDIT_KEY)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env_remove("RUNBOOK_CONTEXT")
            .env_remove("RUNBOOK_JOURNAL_KEY");
        command
    }

    /// `runbook ARGS` on this machine, to the end.
    fn run(&self, lab: &Lab, scratch: &Scratch, args: &[&str]) -> std::process::Output {
        self.command(lab, scratch, args)
            .stdin(Stdio::null())
            .output()
            .expect("runbook runs")
    }

    fn spawn(&self, lab: &Lab, scratch: &Scratch, args: &[&str], log: &Path) -> Child {
        let log = std::fs::File::create(log).unwrap();
        self.command(lab, scratch, args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start runbook")
    }

    /// The run ids in this machine's state dir.
    fn runs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state.join("runs")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.contains('.'))
            .collect()
    }

    fn journal(&self, run: &str) -> PathBuf {
        self.state.join("runs").join(run).join("journal.jsonl")
    }
}

fn text(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The run's journal as S3 holds it, read with boto3 (a client we did not
/// write): its segments in key order, concatenated.
fn s3_journal(lab: &Lab, scratch: &Scratch, prefix: &str, run: &str) -> Vec<u8> {
    let s3 = lab.s3().unwrap();
    let keys = s3.list_keys(&format!("{prefix}/{run}/journal/")).unwrap();
    assert!(!keys.is_empty(), "no segments of {run} in S3");
    let mut journal = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let file = scratch.path().join(format!("segment-{index}"));
        s3.download(key, &file).unwrap();
        journal.extend(std::fs::read(&file).unwrap());
    }
    journal
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn six_steps(scratch: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let file = scratch.write("six.rhai", SIX_STEPS);
    (file, scratch.file("out.txt"), scratch.file("go"))
}

fn run_args<'a>(file: &'a Path, out: &'a str, gate: &'a str, journal: &'a str) -> Vec<String> {
    vec![
        "run".into(),
        file.display().to_string(),
        format!("out={out}"),
        format!("gate={gate}"),
        "--context".into(),
        "lab".into(),
        "--journal".into(),
        journal.into(),
        "--approve".into(),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Whether the lab's S3 server honours conditional writes (the probe says
/// so): s3s-fs and moto both do at the versions the lab installs.
fn finished_run_is_identical_in_s3_and_verifies(kind: S3Kind) {
    let lab = lab(kind);
    let scratch = Scratch::new();
    let machine = Machine::new(&scratch, "a");
    let (file, out, gate) = six_steps(&scratch);
    std::fs::write(&gate, "").unwrap();
    let journal = format!("s3://{}/journals", lab.s3().unwrap().bucket());
    let args = run_args(
        &file,
        out.to_str().unwrap(),
        gate.to_str().unwrap(),
        &journal,
    );
    let output = machine.run(&lab, &scratch, &strs(&args));
    assert!(output.status.success(), "{}", text(&output));
    let [run] = machine.runs().try_into().unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(&format!("journal in S3: {journal}/{run}"))
            || String::from_utf8_lossy(&output.stdout)
                .contains(&format!("journal in S3: {journal}/{run}")),
        "{}",
        text(&output)
    );
    let local = std::fs::read(machine.journal(&run)).unwrap();
    assert_eq!(
        s3_journal(&lab, &scratch, "journals", &run),
        local,
        "the S3 journal differs from the local copy"
    );
    let verify = machine.run(&lab, &scratch, &["audit", "verify", &run]);
    assert!(verify.status.success(), "{}", text(&verify));
    // Another machine lists it from S3.
    let other = Machine::new(&scratch, "b");
    let runs = other.run(&lab, &scratch, &["runs", "--journal", &journal]);
    assert!(runs.status.success(), "{}", text(&runs));
    let listing = String::from_utf8_lossy(&runs.stdout);
    assert!(
        listing.contains(&run) && listing.contains(" ok "),
        "{}",
        text(&runs)
    );
}

#[test]
fn s3s_fs_journal_is_identical_to_the_local_copy_and_verifies() {
    finished_run_is_identical_in_s3_and_verifies(S3Kind::S3sFs);
}

#[test]
fn moto_journal_is_identical_to_the_local_copy_and_verifies() {
    finished_run_is_identical_in_s3_and_verifies(S3Kind::Moto);
}

/// The lines of the steps' output file.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// A: start the six steps and wait until it is inside step 4 (three steps
/// done, their journal in S3). Returns A's process and the run id.
fn start_on_a(
    lab: &Lab,
    scratch: &Scratch,
    machine: &Machine,
    journal: &str,
) -> (Child, String, PathBuf, PathBuf) {
    let (file, out, gate) = six_steps(scratch);
    let args = run_args(
        &file,
        out.to_str().unwrap(),
        gate.to_str().unwrap(),
        journal,
    );
    let child = machine.spawn(lab, scratch, &strs(&args), &scratch.file("a.log"));
    wait_for(&scratch.file("go.waiting"), "machine A to reach step 4");
    assert_eq!(lines(&out), ["s1", "s2", "s3"]);
    let [run] = machine.runs().try_into().unwrap();
    (child, run, out, gate)
}

fn killed_on_a_is_finished_by_b(kind: S3Kind) {
    let lab = lab(kind);
    let scratch = Scratch::new();
    let (a, b) = (Machine::new(&scratch, "a"), Machine::new(&scratch, "b"));
    let journal = format!("s3://{}/journals", lab.s3().unwrap().bucket());
    let (mut child, run, out, gate) = start_on_a(&lab, &scratch, &a, &journal);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::write(&gate, "").unwrap();
    let url = format!("{journal}/{run}");
    let resumed = b.run(
        &lab,
        &scratch,
        &["resume", &url, "--context", "lab", "--approve"],
    );
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains(&format!("took run {run} over from")),
        "{}",
        text(&resumed)
    );
    // Every step once: s1-s3 by A, s4-s6 by B.
    assert_eq!(lines(&out), ["s1", "s2", "s3", "s4", "s5", "s6"]);
    // B's local copy is the S3 journal, byte for byte, and it verifies
    // (the chain A began and B continued, under the shared key).
    let local = std::fs::read(b.journal(&run)).unwrap();
    assert_eq!(s3_journal(&lab, &scratch, "journals", &run), local);
    let verify = b.run(&lab, &scratch, &["audit", "verify", &run]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn s3s_fs_a_run_killed_on_one_machine_is_finished_on_another() {
    killed_on_a_is_finished_by_b(S3Kind::S3sFs);
}

#[test]
fn moto_a_run_killed_on_one_machine_is_finished_on_another() {
    killed_on_a_is_finished_by_b(S3Kind::Moto);
}

fn paused_a_is_fenced_when_it_goes_on(kind: S3Kind) {
    let lab = lab(kind);
    let scratch = Scratch::new();
    let (a, b) = (Machine::new(&scratch, "a"), Machine::new(&scratch, "b"));
    let journal = format!("s3://{}/journals", lab.s3().unwrap().bucket());
    let (mut child, run, out, gate) = start_on_a(&lab, &scratch, &a, &journal);
    signal(&child, "STOP");
    std::fs::write(&gate, "").unwrap();
    let url = format!("{journal}/{run}");
    let resumed = b.run(
        &lab,
        &scratch,
        &["resume", &url, "--context", "lab", "--approve"],
    );
    assert!(resumed.status.success(), "{}", text(&resumed));
    signal(&child, "CONT");
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(scratch.file("a.log")).unwrap();
    assert_eq!(status.code(), Some(4), "{log}");
    assert!(
        log.contains(&format!("run {run} was taken over by"))
            && log.contains("(epoch 2)")
            && log.contains("does nothing more"),
        "{log}"
    );
    // A did no step after it went on: every step ran once.
    assert_eq!(lines(&out), ["s1", "s2", "s3", "s4", "s5", "s6"]);
    // The journal in S3 is B's, whole, and verifies.
    let local = std::fs::read(b.journal(&run)).unwrap();
    assert_eq!(s3_journal(&lab, &scratch, "journals", &run), local);
    let verify = b.run(&lab, &scratch, &["audit", "verify", &run]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn s3s_fs_a_paused_holder_is_fenced_when_it_goes_on() {
    paused_a_is_fenced_when_it_goes_on(S3Kind::S3sFs);
}

#[test]
fn moto_a_paused_holder_is_fenced_when_it_goes_on() {
    paused_a_is_fenced_when_it_goes_on(S3Kind::Moto);
}

/// The probe refuses a store that ignores `If-None-Match` / `If-Match`: moto
/// behind a lab proxy that drops them. Nothing runs, nothing is written.
#[test]
fn a_store_that_ignores_conditional_writes_is_refused() {
    let lab = lab(S3Kind::Moto);
    let scratch = Scratch::new();
    let s3 = lab.s3().unwrap();
    let proxy = runbook_lab::StrippingProxy::start(&s3.endpoint()).unwrap();
    let config = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .replace(&s3.endpoint(), &proxy.endpoint());
    let config_path = scratch.write("runbook.toml", &config);
    let machine = Machine::new(&scratch, "a");
    let (file, out, gate) = six_steps(&scratch);
    let journal = format!("s3://{}/journals", s3.bucket());
    let args = run_args(
        &file,
        out.to_str().unwrap(),
        gate.to_str().unwrap(),
        &journal,
    );
    let output = machine
        .command(&lab, &scratch, &strs(&args))
        .env("RUNBOOK_CONFIG", &config_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(
        all.contains("ignores `If-None-Match: *` (a second create of one key succeeded)")
            && all.contains("nothing was run"),
        "{all}"
    );
    assert!(proxy.stripped() >= 2, "the proxy stripped nothing");
    assert!(lines(&out).is_empty(), "a step ran: {all}");
    assert!(
        s3.list_keys("journals/")
            .unwrap()
            .iter()
            .all(|key| key.contains(".probe/")),
        "{all}"
    );
    // Straight to moto (no proxy), the same run is accepted.
    std::fs::write(&gate, "").unwrap();
    let output = machine.run(&lab, &scratch, &strs(&args));
    assert!(output.status.success(), "{}", text(&output));
}

/// `audit verify` and `resume` of an S3 journal need the shared audit key:
/// without RUNBOOK_AUDIT_KEY an S3 journal is refused before anything runs.
#[test]
fn an_s3_journal_without_the_shared_audit_key_is_refused() {
    let lab = lab(S3Kind::S3sFs);
    let scratch = Scratch::new();
    let machine = Machine::new(&scratch, "a");
    let (file, out, gate) = six_steps(&scratch);
    let journal = format!("s3://{}/journals", lab.s3().unwrap().bucket());
    let args = run_args(
        &file,
        out.to_str().unwrap(),
        gate.to_str().unwrap(),
        &journal,
    );
    let output = machine
        .command(&lab, &scratch, &strs(&args))
        .env_remove("RUNBOOK_AUDIT_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(
        all.contains("an S3 journal needs RUNBOOK_AUDIT_KEY set"),
        "{all}"
    );
    assert!(lines(&out).is_empty(), "{all}");
}

/// A gate of a run on machine A (four-eyes context, journal in S3) is
/// answered from other machines through S3: `gates --journal` lists it,
/// the starter cannot approve, and of two approvers racing exactly one
/// decision is made; the run goes on with it.
fn approvals_across_machines(kind: S3Kind) {
    let lab = lab(kind);
    let scratch = Scratch::new();
    let config = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .replacen("[context.lab]\n", "[context.lab]\nfour_eyes = true\n", 1);
    assert!(config.contains("four_eyes = true"), "{config}");
    let config_path = scratch.write("runbook.toml", &config);
    let file = scratch.write(
        "gated.rhai",
        "step(\"before\", || 1);\napprove(\"ship it?\");\nstep(\"after\", || 2);\n",
    );
    let journal = format!("s3://{}/journals", lab.s3().unwrap().bucket());
    let machines: Vec<Machine> = ["a", "b", "c"]
        .iter()
        .map(|name| Machine::new(&scratch, name))
        .collect();
    let on = |machine: &Machine, who: &str, args: &[&str]| {
        let mut command = machine.command(&lab, &scratch, args);
        command
            .env("RUNBOOK_CONFIG", &config_path)
            .env("RUNBOOK_APPROVER", who)
            .stdin(Stdio::null());
        command
    };
    let a = on(
        &machines[0],
        "alice",
        &[
            "run",
            file.to_str().unwrap(),
            "--context",
            "lab",
            "--journal",
            &journal,
            "--wait-for-approval",
            "5m",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // B sees the gate through S3.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let listed = on(&machines[1], "bob", &["gates", "--journal", &journal])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
        if let Some(line) = listing.lines().find(|line| line.contains("ship it?")) {
            assert!(
                line.contains("alice") && line.contains("(four eyes)"),
                "{listing}"
            );
            break line.split_whitespace().next().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no gate listed: {}",
            text(&listed)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Four eyes: alice, on another machine, still cannot approve her own run.
    let own = on(
        &machines[2],
        "alice",
        &["approve", "--journal", &journal, &run],
    )
    .output()
    .unwrap();
    assert_eq!(own.status.code(), Some(3), "{}", text(&own));
    assert!(text(&own).contains("requires four eyes"), "{}", text(&own));
    // Bob and carol race: one decision.
    let racers: Vec<Child> = [("bob", &machines[1]), ("carol", &machines[2])]
        .into_iter()
        .map(|(who, machine)| {
            on(machine, who, &["approve", "--journal", &journal, &run])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<std::process::Output> = racers
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let codes: Vec<Option<i32>> = results.iter().map(|out| out.status.code()).collect();
    let all: String = results.iter().map(text).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [Some(0), Some(4)], "{all}");
    assert!(all.contains("already decided: approved by"), "{all}");
    let winner = if codes[0] == Some(0) { "bob" } else { "carol" };
    let finished = a.wait_with_output().unwrap();
    assert!(finished.status.success(), "{}", text(&finished));
    // The journal (local copy on A, and S3) records the one approval.
    let local = std::fs::read_to_string(machines[0].journal(&run)).unwrap();
    let approvals: Vec<&str> = local
        .lines()
        .filter(|line| line.contains("\"decision\":\"approved\""))
        .collect();
    assert_eq!(approvals.len(), 1, "{local}");
    assert!(
        approvals[0].contains(&format!("\"approver\":\"{winner}\"")),
        "{local}"
    );
    assert_eq!(
        s3_journal(&lab, &scratch, "journals", &run),
        local.as_bytes()
    );
    // Nothing is waiting any more.
    let listed = on(&machines[1], "bob", &["gates", "--journal", &journal])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&run),
        "{}",
        text(&listed)
    );
}

/// On s3s-fs (0.14.1) two concurrent `If-None-Match: *` creates of one
/// key can both succeed (the check and the write are not atomic); a claim
/// reads its decision back, so still only one approver wins.
#[test]
fn s3s_fs_gates_are_approved_from_other_machines_once() {
    approvals_across_machines(S3Kind::S3sFs);
}

#[test]
fn moto_gates_are_approved_from_other_machines_once() {
    approvals_across_machines(S3Kind::Moto);
}

/// Sealed values: a step's secret value is journaled sealed under A's run
/// key (a key file in A's state dir). B cannot resume without
/// RUNBOOK_JOURNAL_KEY and says so, running nothing; on A itself
/// `runbook resume RUN` (the run id) continues through S3.
#[test]
fn sealed_values_need_the_run_key_and_a_local_resume_continues_in_s3() {
    let lab = lab(S3Kind::S3sFs);
    let scratch = Scratch::new();
    let (a, b) = (Machine::new(&scratch, "a"), Machine::new(&scratch, "b"));
    let file = scratch.write(
        "sealed.rhai",
        r#"//! @param out required  file to append to
//! @param gate required  file the second step waits for
let out = param("out");
let gate = param("gate");
let token = step("token", || secret("api_token"));
step("wait", || {
    shell::run(["sh", "-c", "touch \"$1.waiting\"; while [ ! -f \"$1\" ]; do sleep 0.05; done", "sh", gate]);
    shell::run(["sh", "-c", "echo used >> \"$1\"", "sh", out]);
});
"#,
    );
    let (out, gate) = (scratch.file("out.txt"), scratch.file("go"));
    let journal = format!("s3://{}/journals", lab.s3().unwrap().bucket());
    let args = [
        "run".to_owned(),
        file.display().to_string(),
        format!("out={}", out.display()),
        format!("gate={}", gate.display()),
        "--context".into(),
        "lab".into(),
        "--journal".into(),
        journal.clone(),
        "--approve".into(),
    ];
    let mut child = a.spawn(&lab, &scratch, &strs(&args), &scratch.file("a.log"));
    wait_for(
        &scratch.file("go.waiting"),
        "machine A to reach the second step",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let [run] = a.runs().try_into().unwrap();
    std::fs::write(&gate, "").unwrap();
    let url = format!("{journal}/{run}");
    let refused = b.run(
        &lab,
        &scratch,
        &["resume", &url, "--context", "lab", "--approve"],
    );
    let all = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{all}");
    assert!(
        all.contains("the journal holds sealed values")
            && all.contains("RUNBOOK_JOURNAL_KEY")
            && all.contains("never next to the journal")
            && all.contains("nothing was run"),
        "{all}"
    );
    assert!(lines(&out).is_empty(), "{all}");
    assert!(!all.contains(runbook_lab::Lab::API_TOKEN), "{all}");
    // B refused before taking the lease: A's process would not have been
    // fenced.
    let lease = scratch.file("lease.json");
    lab.s3()
        .unwrap()
        .download(&format!("journals/{run}/lease.json"), &lease)
        .unwrap();
    let lease: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    assert_eq!(lease["epoch"], 1, "{lease}");
    // On A, by run id: the resume continues in S3.
    let resumed = a.run(&lab, &scratch, &["resume", &run, "--approve"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(lines(&out), ["used"]);
    let local = std::fs::read(a.journal(&run)).unwrap();
    assert_eq!(s3_journal(&lab, &scratch, "journals", &run), local);
    let verify = a.run(&lab, &scratch, &["audit", "verify", &run]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(!String::from_utf8_lossy(&local).contains(runbook_lab::Lab::API_TOKEN));
}
