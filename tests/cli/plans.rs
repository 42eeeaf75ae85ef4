//! Every shipped runbook (`runbooks/`) and example (`examples/`) plans
//! cleanly, exit 0, both online (`--dry-run --context lab` against a lab with
//! every component, after a deploy and a backup) and offline (`--dry-run
//! --offline` in the `lab` context of `runbooks/runbook.toml`, with the
//! fixtures the file ships in `fixtures/NAME.yaml` beside it, or none). The folders are
//! enumerated, so a new runbook or example is covered without touching this
//! file (unless it has a required param this file cannot give a value for).

use std::path::{Path, PathBuf};

use runbook_lab::{Lab, S3Kind};

use crate::harness::{Run, Scratch, free_port, repo_root};

/// Every `FOLDER/*.rhai`, as paths relative to the repo root, sorted.
pub(crate) fn rhai_files(folder: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo_root().join(folder))
        .expect("read the folder")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rhai"))
        .map(|path| PathBuf::from(folder).join(path.file_name().expect("file name")))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "{folder}/ has no .rhai files");
    found
}

fn shipped() -> Vec<PathBuf> {
    let mut files = rhai_files("runbooks");
    files.extend(rhai_files("examples"));
    files
}

/// The folder a runbook's `dir` param points at (inside the run's scratch dir).
pub(crate) const PARAM_DIR: &str = "param-dir";

/// `(name, requirement)` of each `//! @param NAME requirement ...`.
fn declared_params(file: &Path) -> Vec<(String, String)> {
    let source = std::fs::read_to_string(repo_root().join(file)).expect("read the file");
    source
        .lines()
        .map_while(|line| {
            line.trim_start()
                .strip_prefix("//!")
                .or_else(|| line.trim().is_empty().then_some(""))
        })
        .filter_map(|line| line.trim_start().strip_prefix("@param"))
        .map(|spec| {
            let mut words = spec.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let requirement = words.next().unwrap_or("optional").to_owned();
            (name, requirement)
        })
        .collect()
}

/// Params that keep a run on loopback and out of shared folders; a required
/// param this does not know fails the test with a clear message.
pub(crate) fn params_for(file: &Path, scratch: &Scratch) -> Vec<String> {
    declared_params(file)
        .into_iter()
        .filter_map(|(name, requirement)| match name.as_str() {
            "port" => Some(format!("port={}", free_port())),
            "dir" => Some(format!("dir={}", scratch.file(PARAM_DIR).display())),
            "version" if requirement == "required" => Some("version=v2".to_owned()),
            "name" if requirement == "required" => Some("name=plans".to_owned()),
            // The staging runbooks: a public key of our own, and no kubeconfig under ~/.kube.
            "ssh_public_key" => {
                let key = scratch.write(
                    "plans_key.pub",
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBsYW5zLXRlc3Qta2V5LW5vdC1hLXJlYWwtb25l plans@test\n",
                );
                Some(format!("ssh_public_key={}", key.display()))
            }
            "kubeconfig" => Some(format!(
                "kubeconfig={}",
                scratch.file("plans-kubeconfig.yaml").display()
            )),
            _ if requirement == "required" => panic!(
                "{} has a required param `{name}`: teach tests/cli/plans.rs::params_for a value for it",
                file.display()
            ),
            _ => None,
        })
        .collect()
}

/// `fixtures/NAME.yaml` beside the file, if it ships one.
fn shipped_fixtures(file: &Path) -> Option<PathBuf> {
    let stem = file.file_stem()?.to_string_lossy().into_owned();
    let path = repo_root()
        .join(file.parent()?)
        .join("fixtures")
        .join(format!("{stem}.yaml"));
    path.exists().then_some(path)
}

fn full_lab() -> Lab {
    Lab::builder()
        .ssh_hosts(1)
        .postgres(true)
        .s3(S3Kind::S3sFs)
        .kube(true)
        .hcloud(true)
        .start()
        .expect("the lab starts")
}

/// The lab as an on-call engineer finds it: `v2` deployed over `v1` (so
/// there is something to roll back) and one backup taken (so there is
/// something to restore).
fn seed(lab: &Lab) {
    for (file, params) in [
        ("runbooks/deploy-production.rhai", vec!["version=v2"]),
        ("runbooks/backup-db.rhai", vec![]),
    ] {
        Run::new(repo_root().join(file))
            .args(params)
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .approve()
            .output()
            .assert_success();
    }
}

#[test]
fn every_shipped_runbook_and_example_plans_online() {
    let lab = full_lab();
    seed(&lab);
    let hooks_before = lab.http().hooks("notify").len();
    let kube_before = lab.kube().map(runbook_lab::KubeApi::dump);
    let mut failures = Vec::new();
    for file in shipped() {
        let scratch = Scratch::new();
        let output = Run::new(repo_root().join(&file))
            .args(params_for(&file, &scratch))
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .dry_run()
            .output();
        if output.code != 0 || !output.all().contains("Plan: ") {
            failures.push(format!("{}:\n{}", file.display(), output.report()));
        }
        assert!(
            !scratch.exists(PARAM_DIR),
            "a dry-run of {} created its `dir`",
            file.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        kube_before == lab.kube().map(runbook_lab::KubeApi::dump),
        "a dry-run changed the cluster"
    );
    assert!(
        lab.http().hooks("notify").len() == hooks_before,
        "a dry-run delivered a webhook"
    );
}

#[test]
fn every_shipped_runbook_and_example_plans_offline() {
    let mut failures = Vec::new();
    for file in shipped() {
        let scratch = Scratch::new();
        let mut run = Run::new(repo_root().join(&file))
            .args(params_for(&file, &scratch))
            .config(repo_root().join("runbooks/runbook.toml"))
            .context("lab")
            .dry_run()
            .offline();
        if let Some(fixtures) = shipped_fixtures(&file) {
            run = run.fixtures(fixtures);
        }
        let output = run.output();
        if output.code != 0 || !output.all().contains("Plan: ") {
            failures.push(format!("{}:\n{}", file.display(), output.report()));
        }
        assert!(
            !scratch.exists(PARAM_DIR),
            "an offline dry-run of {} created its `dir`",
            file.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The numbered lines of a plan (`  3. k8s::apply(...)`), timestamps made equal.
fn plan_lines(output: &crate::harness::Output) -> Vec<String> {
    let mut lines = Vec::new();
    for line in output.stdout.lines() {
        let trimmed = line.trim_start();
        let numbered = trimmed.split_once(". ").is_some_and(|(number, _)| {
            !number.is_empty() && number.chars().all(|c| c.is_ascii_digit())
        });
        if numbered {
            lines.push(normalize_stamps(trimmed));
        }
    }
    lines
}

/// `20261202T191512Z` and `20261202191512` → `<stamp>`: the runs happen seconds apart.
fn normalize_stamps(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let stamp = chars.len() >= i + 16
            && chars[i..i + 8].iter().all(char::is_ascii_digit)
            && chars[i + 8] == 'T'
            && chars[i + 9..i + 15].iter().all(char::is_ascii_digit)
            && chars[i + 15] == 'Z';
        let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if stamp {
            out.push_str("<stamp>");
            i += 16;
        } else if digits >= 12 {
            out.push_str("<stamp>");
            i += digits;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn fixtures_recorded_online_reproduce_the_plan_offline() {
    let lab = full_lab();
    seed(&lab);
    let mut failures = Vec::new();
    let mut compared = 0;
    for file in shipped() {
        let scratch = Scratch::new();
        let params = params_for(&file, &scratch);
        let online = Run::new(repo_root().join(&file))
            .args(params.clone())
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .dry_run()
            .output();
        let record = Run::command(["fixtures", "record"])
            .arg(repo_root().join(&file))
            .args(params.clone())
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .output();
        if record.code != 0 {
            failures.push(format!("record {}:\n{}", file.display(), record.report()));
            continue;
        }
        let fixtures = scratch.write("fixtures.yaml", &record.stdout);
        let offline = Run::new(repo_root().join(&file))
            .args(params)
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .dry_run()
            .offline()
            .fixtures(&fixtures)
            .output();
        let (want, got) = (plan_lines(&online), plan_lines(&offline));
        compared += want.len();
        if online.code != 0 || offline.code != 0 || want != got {
            failures.push(format!(
                "{}: online plan\n  {}\noffline plan with recorded fixtures\n  {}\n--- fixtures:\n{}\n{}",
                file.display(),
                want.join("\n  "),
                got.join("\n  "),
                record.stdout,
                offline.report()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(compared >= 20, "only {compared} plan items were compared");
}
