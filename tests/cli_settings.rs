//! `qwen3vl serve` reads its settings from one type: flags, a `--settings` file and MindIE's
//! `config.json` are layered, and a bad settings file stops the server before it loads anything,
//! naming what is wrong.

use std::process::Command;

fn serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .arg("serve")
        .args(args)
        .output()
        .unwrap()
}

fn file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3vl-cli-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_settings_files_are_refused_by_name() {
    let cases = [
        ("typo.json", r#"{"prot": 8080}"#, "prot"),
        ("dtype.json", r#"{"dtype": "bf17"}"#, "bf17"),
        ("shape.json", r#"[1, 2]"#, "object"),
        ("type.json", r#"{"port": "many"}"#, "port"),
    ];
    for (name, text, needle) in cases {
        let p = file(name, text);
        let out = serve(&["--settings", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            err.contains(needle),
            "{name}: `{needle}` not named in {err}"
        );
    }
}

/// The file fills what the flags leave unset: with the model in the file, the server gets as
/// far as loading it (and fails there, on a folder that is not a checkpoint), while a flag
/// naming another folder wins over the file.
#[test]
fn flags_win_over_the_settings_file() {
    let missing = std::env::temp_dir().join("qwen3vl-no-such-model-from-file");
    let p = file(
        "model.json",
        &format!(r#"{{"model": {:?}, "port": 0}}"#, missing.to_str().unwrap()),
    );
    let out = serve(&["--settings", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("qwen3vl-no-such-model-from-file"), "{err}");
    let out = serve(&[
        "--settings",
        p.to_str().unwrap(),
        "--model",
        "/nonexistent/from-flag",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from-flag"), "{err}");
    assert!(!err.contains("qwen3vl-no-such-model-from-file"), "{err}");
}
