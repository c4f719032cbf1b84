//! Values checked before anything happens: each bad value below is refused with exit 64 (or the
//! documented code) and a message naming the flag — before any change, any file, any call.

use crate::support::{Run, admin_token, custom_kubeconfig, sandbox};

/// (arguments, exit code, words the message must have)
const CASES: &[(&[&str], i32, &str)] = &[
    (&["scale", "4", "--yes", "--timeout", "0"], 64, "above zero"),
    (
        &["restart", "slaves", "--yes", "--timeout", "0s"],
        64,
        "above zero",
    ),
    (&["diagnose", "--timeout", "0"], 64, "above zero"),
    (&["diagnose", "--timeout", "1h30"], 64, "without a unit"),
    (&["backup", "--chunk-rows", "0"], 64, "1000 or more"),
    (&["backup", "--threads", "0"], 64, "give 1 to 64"),
    (&["backup", "--threads", "1000"], 64, "give 1 to 64"),
    (
        &["backup", "prune", "--keep-last", "0", "--keep-daily", "0"],
        64,
        "keep at least one",
    ),
    (
        &["restore", "20261201T000000Z", "--database", ""],
        64,
        "database name is empty",
    ),
    (
        &["restore", "20261201T000000Z", "--database", "a/b"],
        64,
        "does not allow",
    ),
    (&["pods", "-n", ""], 64, "not a namespace name"),
    (
        &["pods", "-n", "new-api?watch=true"],
        64,
        "not a namespace name",
    ),
    (
        &["pods", "-n", "new-api%2Fpods"],
        64,
        "not a namespace name",
    ),
    (
        &["pods", "--config", "/nonexistent/newapi-ops.toml"],
        78,
        "no such file",
    ),
    (&["logs", "--since", "soon"], 64, "not a duration"),
    (&["completions", "tcsh"], 64, "invalid value"),
    (
        &["runbook", "run", "../oomkilled"],
        66,
        "no runbook file at ../oomkilled",
    ),
];

#[test]
fn bad_values_are_refused_before_anything_happens() {
    for (args, code, words) in CASES {
        let out = Run::new(*args).admin().output();
        assert_eq!(out.code, *code, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(words),
            "{args:?} should say {words:?}: {}",
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed data: {}",
            out.stdout
        );
    }
    // A namespace of 100 KB (about the longest single argument Linux passes) is refused
    // without echoing it all back.
    let long = "n".repeat(100_000);
    let out = Run::new(["pods", "-n", &long]).admin().output();
    assert_eq!(out.code, 64);
    assert!(
        out.stderr.len() < 2000,
        "{} bytes of error",
        out.stderr.len()
    );
}

/// The kubeconfig names the API server with http:// (it speaks HTTPS): unreachable (69), and
/// the message says to use https.
#[test]
fn a_plain_http_server_address_is_unavailable_with_a_hint() {
    let sb = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let http = sb.api_server.replacen("https://", "http://", 1);
    let ca = std::fs::read_to_string(&sb.ca_cert).unwrap();
    let kc = custom_kubeconfig(dir.path(), &http, &ca, &admin_token());
    let out = Run::new(["pods"]).env("KUBECONFIG", &kc).output();
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("use https://"), "{}", out.stderr);
}

/// Completions and the man page come from the same definitions as --help.
#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = Run::new(["completions", shell]).output();
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(
            out.stdout.contains("diagnose"),
            "{shell} completes the commands"
        );
        assert!(
            out.stdout.contains("namespace"),
            "{shell} completes the flags"
        );
    }
    let man = Run::new(["man"]).output();
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH newapi-ops 1"),
        "{}",
        man.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Run::new(["man", "--dir", dir.path().to_str().unwrap()]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    for page in [
        "newapi-ops.1",
        "newapi-ops-diagnose.1",
        "newapi-ops-backup-prune.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
}

/// A runbook file over the limit is named with its real size, not the bytes read to find out.
#[test]
fn an_oversized_runbook_says_its_real_size() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    let mut text = String::from("name: big\n");
    while text.len() < 300_103 {
        text.push_str("# padding\n");
    }
    text.truncate(300_103);
    std::fs::write(&file, &text).unwrap();
    let out = Run::new(["runbook", "validate", file.to_str().unwrap()]).output();
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("the file is 300103 bytes"),
        "{}",
        out.stderr
    );
}
