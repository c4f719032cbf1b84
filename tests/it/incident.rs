//! `newapi-ops incident`, driven as a person would: the real binary in a real terminal (tmux:
//! send-keys to type, capture-pane to read the screen) against the sandbox's control plane. A
//! slave crash-loops, OOMKilled, with `Too many connections` in its previous log; the findings
//! show both, the oomkilled and db-connection runbooks are proposed, one runs step by step, its
//! mutating step is confirmed and re-checked, and the report holds the timeline and the
//! actions. Also: Ctrl-C mid-incident then `--resume`, the refusal without a terminal, and a
//! scripted `--answers` run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Run, apply_in, bin, findings, newapi_deployment, poll_diagnose, sandbox};

/// A value of the test namespace's Secret: the redactor must mask it wherever it appears.
const SECRET: &str = "incident-test-secret-value-42";

/// A namespace with a master and a slave that crash-loops OOMKilled with `Too many connections`
/// in its previous log; returns it once diagnose sees both.
async fn broken_namespace(base: &str) -> String {
    let ns = apply_in(
        base,
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment(
                "slave",
                1,
                json!({
                    "sandbox.newapi-ops.io/behavior": "crashloop-oom",
                    "sandbox.newapi-ops.io/previous-log": "[SYS] 2025/11/13 - 10:00:00 | New API started\n[ERR] 2025/11/13 - 10:00:01 | failed to connect database: Error 1040: Too many connections"
                }),
                json!({}),
            ),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "new-api-secret"},
                "stringData": {"SESSION_SECRET": SECRET}
            }),
        ],
    )
    .await;
    let ns2 = ns.clone();
    tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns2, "--only", "pods,logs"], |r| {
            !findings(r, "pods.crashloop").is_empty()
                && !findings(r, "logs.mysql-too-many-connections").is_empty()
        })
    })
    .await
    .unwrap();
    ns
}

/// A terminal of its own: a private tmux server running one command.
struct Tty {
    socket: String,
}

impl Tty {
    /// Starts `args` of the binary in a 250×60 terminal, with a clean environment; the shell
    /// around it prints `EXIT=<code>` when it ends and keeps the pane open.
    fn start(name: &str, home: &Path, args: &[&str]) -> Tty {
        let socket = format!("newapi-ops-it-{name}-{}", std::process::id());
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!(
            "trap 'true' INT; env -i PATH=\"$PATH\" HOME='{home}' XDG_CONFIG_HOME='{home}/.config' XDG_STATE_HOME='{home}/state' TERM=xterm NO_COLOR=1 KUBECONFIG='{kc}' '{bin}' {args}; echo \"EXIT=$?\"; sleep 600",
            home = home.display(),
            kc = sandbox().kubeconfig.display(),
            bin = bin(),
            args = quoted.join(" ")
        );
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "250",
                "-y",
                "60",
                "sh",
                "-c",
                &script,
            ])
            .status()
            .expect("tmux (scripts/setup.sh installs it)");
        assert!(ok.success(), "tmux new-session failed");
        Tty { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything the terminal showed, scroll-back included.
    fn history(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-10000", "-t", "0"])
    }

    /// What the terminal shows now.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-t", "0"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "0", k]);
        }
    }

    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "0", "-l", text]);
        self.keys(&["Enter"]);
    }

    /// Waits until `ready` holds for the screen (bounded, so a broken flow fails instead of
    /// hanging the suite; it times nothing); returns that screen.
    #[track_caller]
    fn wait(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if t0.elapsed() > Duration::from_secs(180) {
                panic!("waited for {what}; the terminal shows:\n{}", self.history());
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits for a prompt line (`prompt:` with nothing after it yet) to be active.
    #[track_caller]
    fn wait_prompt(&self, starts: &str) -> String {
        self.wait(&format!("the prompt `{starts}`"), |s| {
            active_prompt(s, starts).is_some()
        })
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// The items of the prompt that starts with `starts` if it is waiting for an answer: the lines
/// after it, up to the first blank one.
fn active_prompt(screen: &str, starts: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with(starts) && l.trim_end().ends_with(':'))?;
    Some(
        lines[at + 1..]
            .iter()
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.to_string())
            .collect(),
    )
}

/// The position of the item containing `text` in the active prompt's list, once the list is
/// drawn down to the item containing `last`.
fn item_index(tty: &Tty, prompt: &str, text: &str, last: &str) -> usize {
    let screen = tty.wait(&format!("`{prompt}` listing `{text}` … `{last}`"), |s| {
        active_prompt(s, prompt).is_some_and(|items| {
            items.iter().any(|l| l.contains(text)) && items.iter().any(|l| l.contains(last))
        })
    });
    let items = active_prompt(&screen, prompt).unwrap_or_default();
    items
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_default()
}

/// The last items of the incident's lists.
const LAST_SYMPTOM: &str = "I don't know";
const LAST_RUNBOOK: &str = "None — write the report now";
const LAST_STEP: &str = "Stop the runbook here";

fn state_of(dir: &Path) -> (PathBuf, Value) {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one incident in {}: {entries:?}",
        dir.display()
    );
    let d = entries[0].clone();
    let state =
        serde_json::from_str(&std::fs::read_to_string(d.join("state.json")).unwrap()).unwrap();
    (d, state)
}

#[track_caller]
fn assert_private_and_secret_free(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(SECRET), "{} holds the secret", p.display());
    }
}

/// Answers each step prompt of a runbook with Enter (the first choice: run, done, apply), from
/// step `from` to `to`; at step `note_at` adds a note first.
fn enter_steps(tty: &Tty, from: usize, to: usize, total: usize, note_at: Option<(usize, &str)>) {
    for k in from..=to {
        let prompt = format!("[{k}/{total}]");
        tty.wait_prompt(&prompt);
        if let Some((at, note)) = note_at
            && at == k
        {
            let i = item_index(tty, &prompt, "Add a note first", LAST_STEP);
            tty.keys(&vec!["Down"; i]);
            tty.keys(&["Enter"]);
            tty.wait_prompt("Note (at step");
            tty.type_line(note);
            tty.wait(&format!("{prompt} again"), |s| {
                s.contains("noted.") && active_prompt(s, &prompt).is_some()
            });
        }
        tty.keys(&["Enter"]);
        tty.wait(&format!("{prompt} answered"), |s| {
            active_prompt(s, &prompt).is_none()
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_incident_in_a_terminal_from_symptoms_to_report() {
    let ns = broken_namespace("incident-tty").await;
    let home = tempfile::tempdir().unwrap();
    let incidents = home.path().join("incidents");
    let tty = Tty::start(
        "whole",
        home.path(),
        &[
            "incident",
            "-n",
            &ns,
            "--recheck-for",
            "20s",
            "--dir",
            incidents.to_str().unwrap(),
        ],
    );
    tokio::task::spawn_blocking(move || {
        // 1. What is wrong: pods restarting (first item) and database errors (fifth).
        let db = item_index(&tty, "What is wrong?", "Database errors", LAST_SYMPTOM);
        tty.keys(&["Space"]);
        tty.keys(&vec!["Down"; db]);
        tty.keys(&["Space", "Enter"]);

        // 2. The findings, worst first, with their evidence; 3. the runbooks that fit, and why.
        tty.wait_prompt("Which runbook?");
        let all = tty.history();
        let findings = &all[all.find("Findings, worst first").expect("findings shown")..];
        assert!(
            findings.contains("critical pods.crashloop pod/new-api-slave-"),
            "{all}"
        );
        assert!(findings.contains("OOMKilled 137"), "{all}");
        assert!(
            findings.contains("critical logs.mysql-too-many-connections"),
            "{all}"
        );
        assert!(findings.contains("seen: previous log"), "{all}");
        let fit = &all[all.find("Runbooks that fit").unwrap()..];
        assert!(fit.contains("oomkilled — Pods are OOMKilled"), "{fit}");
        assert!(
            fit.contains("db-connection — New-API cannot use its database"),
            "{fit}"
        );
        assert!(
            fit.contains("logs.mysql-too-many-connections on pod/new-api-slave-"),
            "{fit}"
        );
        assert!(
            fit.contains("to it: pods.crashloop on pod/new-api-slave-"),
            "{fit}"
        );
        let oom = item_index(&tty, "Which runbook?", "Run oomkilled", LAST_RUNBOOK);
        tty.keys(&vec!["Down"; oom]);
        tty.keys(&["Enter"]);

        // The pod input defaults to the crashing pod: Enter takes it.
        let screen = tty.wait_prompt("delete_pod");
        assert!(screen.contains("[new-api-slave-"), "{screen}");
        tty.keys(&["Enter"]);

        // 4. Step by step: a note at the first step; the manual step is done; the mutating step
        // shows exactly what it changes and is applied, then re-checked.
        enter_steps(&tty, 1, 7, 8, Some((1, "paged at 03:12, slave restarting")));
        let apply = item_index(&tty, "[8/8]", "Apply: delete pod", LAST_STEP);
        assert_eq!(apply, 0, "applying is the first choice");
        let screen = tty.screen();
        assert!(
            screen.contains("will change: delete pod new-api-slave-"),
            "{screen}"
        );
        assert!(
            screen.contains("> Apply: delete pod new-api-slave-"),
            "{screen}"
        );
        tty.keys(&["Enter"]);
        tty.wait_prompt("Anything to add to the report?");
        let all = tty.history();
        assert!(
            all.contains("re-check: pods.crashloop on pod/new-api-slave-"),
            "{all}"
        );

        // 5. The report, with a last note holding a secret that must not reach the disk.
        tty.type_line(&format!(
            "limit to be raised in k8s/new-api.yaml; secret {SECRET}"
        ));
        let screen = tty.wait("the end", |s| s.contains("EXIT="));
        assert!(screen.contains("EXIT=0"), "{}", tty.history());
        assert!(screen.contains("report: "), "{screen}");
    })
    .await
    .unwrap();

    let (dir, state) = state_of(&incidents);
    assert_eq!(state["status"], "closed");
    assert_private_and_secret_free(&dir);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "- status: closed",
        "- Pods restarting or not starting\n- Database errors\n",
        "## Timeline",
        "| symptoms: Pods restarting or not starting; Database errors |",
        "chose runbook oomkilled (",
        "step failing (pods.failing): ok",
        "confirmed step fresh_pod: delete pod new-api-slave-",
        "**critical** `pods.crashloop` (pod/new-api-slave-",
        "**critical** `logs.mysql-too-many-connections`",
        "| Delete the pod so it starts afresh | `pod.delete` | mutating | ok |",
        "## Actions",
        "- before: pods.crashloop on pod/new-api-slave-",
        "- after: pods.crashloop on pod/new-api-slave-",
        "paged at 03:12, slave restarting",
        "limit to be raised in k8s/new-api.yaml; secret ***",
        "## Still open",
        "## Transcripts",
    ] {
        assert!(
            report.contains(needle),
            "report lacks `{needle}`:\n{report}"
        );
    }
    // The timeline is in order.
    let t = |s: &str| report.find(s).unwrap_or_else(|| panic!("{s}"));
    assert!(t("incident opened") < t("| symptoms:"));
    assert!(t("| diagnosed (") < t("chose runbook"));
    assert!(t("confirmed step fresh_pod") < t("re-checked after `delete pod"));
    assert!(t("re-checked after") < t("incident closed"));
    // The pod really was deleted: the action's subject is gone from the cluster.
    let deleted = state["actions"][0]["change"].as_str().unwrap().to_string();
    let pod = deleted.split_whitespace().nth(2).unwrap().to_string();
    let out = Run::new(["pods", "-n", &ns, "-o", "json"]).admin().output();
    assert!(
        !out.stdout.contains(&format!("\"{pod}\"")),
        "{pod} still listed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_incident_saves_it_and_resume_finishes_it() {
    let ns = broken_namespace("incident-resume").await;
    let home = tempfile::tempdir().unwrap();
    let incidents = home.path().join("incidents");
    let inc = incidents.to_str().unwrap().to_string();
    let tty = Tty::start(
        "resume",
        home.path(),
        &["incident", "-n", &ns, "--dir", &inc],
    );
    let tty = tokio::task::spawn_blocking(move || {
        item_index(&tty, "What is wrong?", "Pods restarting", LAST_SYMPTOM);
        tty.keys(&["Space", "Enter"]);
        let oom = item_index(&tty, "Which runbook?", "Run oomkilled", LAST_RUNBOOK);
        tty.keys(&vec!["Down"; oom]);
        tty.keys(&["Enter"]);
        tty.wait_prompt("delete_pod");
        tty.keys(&["Enter"]);
        enter_steps(&tty, 1, 2, 8, None);
        tty.wait_prompt("[3/8]");
        tty.keys(&["C-c"]);
        let screen = tty.wait("the exit", |s| s.contains("EXIT="));
        assert!(screen.contains("EXIT=130"), "{}", tty.history());
        assert!(
            screen.contains("continue with: newapi-ops incident --resume "),
            "{screen}"
        );
        tty
    })
    .await
    .unwrap();
    drop(tty);

    let (dir, state) = state_of(&incidents);
    assert_eq!(state["status"], "interrupted");
    assert_eq!(state["chosen"]["runbook"], "oomkilled");
    let steps = state["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{state:#}");
    assert_eq!(steps[2]["status"], "not-run", "interrupted at its prompt");
    assert!(
        dir.join("report.md").is_file(),
        "the report so far is written"
    );

    // Resuming in another namespace is refused, naming the right one.
    let other = Run::new([
        "incident",
        "--dir",
        &inc,
        "--resume",
        "--answers",
        "/dev/null",
    ])
    .admin()
    .output();
    other.code(64).stderr_has(&format!(
        "is about namespace {ns}, not new-api: resume it with -n {ns}"
    ));

    // Resumed by a script: the runbook goes on from its first step (read-only steps read again,
    // nothing is applied twice); the mutating step is skipped this time.
    let answers = home.path().join("answers");
    std::fs::write(
        &answers,
        "run\nrun\nrun\nrun\nrun\nrun\ndone\nskip\nthe limit is raised first\n-\n",
    )
    .unwrap();
    let resume = || {
        let a = answers.to_str().unwrap();
        Run::new([
            "incident",
            "-n",
            &ns,
            "--dir",
            &inc,
            "--resume",
            "--answers",
            a,
        ])
        .admin()
        .output()
    };
    let out = resume();
    out.code(0);
    let (dir, state) = state_of(&incidents);
    assert_eq!(state["status"], "closed");
    let steps = state["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "each step once: {state:#}");
    assert_eq!(steps[7]["status"], "skipped");
    assert!(
        steps[7]["summary"]
            .as_str()
            .unwrap()
            .contains("the limit is raised first")
    );
    assert!(state["actions"].as_array().unwrap().is_empty());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let t = |s: &str| {
        report
            .find(s)
            .unwrap_or_else(|| panic!("`{s}` in\n{report}"))
    };
    assert!(t("| interrupted (Ctrl-C) |") < t("| resumed |"));
    assert!(t("| resumed |") < t("step fresh_pod skipped: the limit is raised first"));
    assert!(report.contains("Nothing was changed."));
    assert_eq!(report.matches("## Transcripts").count(), 1);
    assert_eq!(
        state["transcripts"].as_array().unwrap().len(),
        2,
        "one per run"
    );

    // Nothing is left to resume.
    let out = resume();
    out.code(66).stderr_has("no incident to resume in");
}

#[test]
fn without_a_terminal_it_refuses_and_points_to_diagnose_and_runbook_run() {
    let out = Run::new(["incident"]).admin().output();
    out.code(64)
        .stderr_has("no terminal to ask them on")
        .stderr_has("newapi-ops diagnose")
        .stderr_has("newapi-ops runbook run NAME")
        .stderr_has("--answers FILE");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_incident_with_answers_and_its_bad_answers() {
    let ns = broken_namespace("incident-answers").await;
    let home = tempfile::tempdir().unwrap();
    let inc = home.path().join("incidents");
    let answers = home.path().join("answers");
    // Database errors → db-connection (read-only but for a MySQL restart that stays off). This
    // namespace has no MySQL: the ping fails, the steps that need it are skipped, and the last
    // check fails — five questions, one note, and the last question of all.
    std::fs::write(
        &answers,
        "# what is wrong\ndatabase\n# the runbook, its input\ndb-connection\nfalse\n\
         run\nrun\nrun\nrun\nnote\nsecret is incident-test-secret-value-42\nrun\n-\n",
    )
    .unwrap();
    let out = Run::new([
        "incident",
        "-n",
        &ns,
        "--dir",
        inc.to_str().unwrap(),
        "--answers",
        answers.to_str().unwrap(),
        "-o",
        "json",
    ])
    .admin()
    .output();
    out.code(0);
    let summary = out.json();
    assert_eq!(summary["status"], "closed");
    assert_eq!(summary["runbook"], "db-connection");
    let (dir, state) = state_of(&inc);
    assert_eq!(
        summary["report"],
        dir.join("report.md").display().to_string()
    );
    assert_eq!(state["runbook_status"], "aborted", "{state:#}");
    let status = |id: &str| {
        state["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("ping").as_deref(), Some("failed"));
    assert_eq!(status("status").as_deref(), Some("skipped"));
    assert_eq!(status("reachable").as_deref(), Some("failed"));
    assert_eq!(state["notes"].as_array().unwrap().len(), 1, "{state:#}");
    assert!(
        out.stderr
            .contains("? What is wrong? Database errors (scripted)"),
        "{}",
        out.stderr
    );
    // The echo of the scripted note is masked like everything printed.
    assert!(
        out.stderr.contains("secret is *** (scripted)")
            && !out.stderr.contains(SECRET)
            && !out.stdout.contains(SECRET),
        "{}",
        out.stderr
    );
    assert_private_and_secret_free(&dir);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("secret is ***"), "{report}");
    assert!(report.contains("`db-connection`"));

    // A wrong answer names its line and the choices, stops, and leaves the incident resumable.
    std::fs::write(&answers, "database\nno-such-runbook\n").unwrap();
    let inc2 = home.path().join("incidents2");
    let out = Run::new([
        "incident",
        "-n",
        &ns,
        "--dir",
        inc2.to_str().unwrap(),
        "--answers",
        answers.to_str().unwrap(),
    ])
    .admin()
    .output();
    out.code(64)
        .stderr_has(":2: `no-such-runbook` answers none of the choices of `Which runbook?`")
        .stderr_has("continue with: newapi-ops incident --resume ");
    let (_, state) = state_of(&inc2);
    assert_eq!(state["status"], "open");
    assert!(state["findings"].is_array());
}

/// MariaDB really killed: the incident finds MySQL unreachable, proposes db-connection, deletes
/// the MySQL pod when asked, and the re-check says honestly that MySQL is still unreachable (the
/// new pod reaches the same dead server); the report keeps it open.
#[test]
fn mysql_killed_the_restart_is_rechecked_and_stays_open() {
    let sb = crate::support::private_sandbox("incident-mysql");
    let sbdir = sb.dir.to_str().unwrap().to_string();
    Run::new(["sandbox", "--dir", &sbdir, "fault", "mysql-down"])
        .output()
        .code(0);
    let home = tempfile::tempdir().unwrap();
    let inc = home.path().join("incidents");
    let answers = home.path().join("answers");
    // database → db-connection with restart_mysql=true: four reading steps, the restart
    // (applied), the last check; then no last note.
    std::fs::write(
        &answers,
        "database\ndb-connection\ntrue\nrun\nrun\nrun\nrun\napply\nrun\n-\n",
    )
    .unwrap();
    let out = Run::new([
        "incident",
        "--dir",
        inc.to_str().unwrap(),
        "--answers",
        answers.to_str().unwrap(),
        "--recheck-for",
        "8s",
        "--timeout",
        "3s",
    ])
    .admin_of(&sb)
    .output();
    out.code(0);
    let (dir, state) = state_of(&inc);
    let findings = state["findings"].as_array().unwrap();
    let connect = findings
        .iter()
        .find(|f| f["check"] == "mysql.connect")
        .unwrap_or_else(|| panic!("{state:#}"));
    assert_eq!(connect["severity"], "critical");
    assert_eq!(
        connect["subject"], "root@mysql",
        "stable across port-forwards"
    );
    let action = &state["actions"][0];
    assert!(
        action["change"]
            .as_str()
            .unwrap()
            .starts_with("delete pod mysql-"),
        "{action:#}"
    );
    let rechecks = action["rechecks"].as_array().unwrap();
    let (target, verdict) = (&rechecks[0][0], &rechecks[0][1]);
    assert_eq!(target["check"], "mysql.connect", "{action:#}");
    assert_eq!(verdict["verdict"], "still", "{action:#}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("- after: mysql.connect on root@mysql: still there"),
        "{report}"
    );
    let open = &report[report.find("## Still open").unwrap()..];
    assert!(
        open.contains("**critical** mysql.connect on root@mysql"),
        "{open}"
    );
    assert_private_and_secret_free(&dir);
    assert!(!report.contains("123456"), "the sandbox's MySQL password");
}

/// SIGTERM (what Kubernetes and `kill` send) while the incident waits for an answer: the wait
/// is given up, the incident is saved as interrupted with its report so far, and the exit code
/// is 143. The answers come from a FIFO that the test keeps open, so the question really waits.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_a_question_waits_saves_the_incident_as_interrupted() {
    use std::io::Write;
    let ns = broken_namespace("incident-sigterm").await;
    let home = tempfile::tempdir().unwrap();
    let inc = home.path().join("incidents");
    let fifo = home.path().join("answers");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    let child = Command::new(bin())
        .args([
            "incident",
            "-n",
            &ns,
            "--dir",
            inc.to_str().unwrap(),
            "--answers",
        ])
        .arg(&fifo)
        .env("KUBECONFIG", &sandbox().kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first answer (what is wrong), then nothing: the next question waits on the FIFO.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(b"database\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let chosen = std::fs::read_dir(&inc)
            .ok()
            .and_then(|mut d| d.next())
            .is_some()
            && state_of(&inc).1["symptoms"].is_array();
        if chosen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the incident never recorded its symptoms"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Give the incident time to reach its next question (the checks run first).
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    drop(writer);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    let (dir, state) = state_of(&inc);
    assert_eq!(state["status"], "interrupted", "{state:#}");
    assert!(
        dir.join("report.md").is_file(),
        "the report so far is written"
    );
    assert!(
        stderr.contains("newapi-ops incident --resume"),
        "says how to go on: {stderr}"
    );

    // While another live process holds the incident (this test's process, as its lock says),
    // a resume is refused with exit 76 naming the holder; nothing is written.
    let me = newapi_ops::backup::staging::Owner::current();
    std::fs::write(dir.join("lock"), serde_json::to_vec(&me).unwrap()).unwrap();
    let before = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let resume = |answers: &str| {
        Run::new([
            "incident",
            "-n",
            &ns,
            "--dir",
            inc.to_str().unwrap(),
            "--resume",
            "--answers",
            answers,
        ])
        .admin()
        .output()
    };
    let refused = resume("/dev/null");
    refused
        .code(76)
        .stderr_has(&format!("is being worked on by process {}", me.pid));
    assert_eq!(
        std::fs::read_to_string(dir.join("state.json")).unwrap(),
        before,
        "a refused resume writes nothing"
    );
    // The lock of a process that has died is taken over.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = newapi_ops::backup::staging::Owner {
        pid: gone.id(),
        ..me
    };
    std::fs::write(dir.join("lock"), serde_json::to_vec(&dead).unwrap()).unwrap();
    let taken = resume("/dev/null");
    assert_ne!(
        taken.code, 76,
        "a dead holder's lock is taken over: {}",
        taken.stderr
    );
    assert!(
        !dir.join("lock").exists(),
        "the lock is removed when the run ends"
    );
}
