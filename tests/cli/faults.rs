//! Bad input never panics: regression tests from the faults probe.

use crate::harness::Scratch;

#[test]
fn a_step_name_of_64_kib_is_shortened_not_a_panic() {
    let scratch = Scratch::new();
    let name = "n".repeat(65_536);
    scratch.write("long.rhai", &format!("step(\"{name}\", || 1);\n"));
    let output = scratch.run("long.rhai").output();
    output.assert_success();
    assert!(
        output.stderr_lines().iter().any(|line| line.contains('…')),
        "the summary shortens the name"
    );
}

#[test]
fn a_script_that_is_not_utf8_is_refused_with_its_byte_offset_and_line() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.file("bad.rhai"),
        b"let a = 1;\nlet b = \"caf\xe9\";\n",
    )
    .unwrap();
    scratch
        .run("bad.rhai")
        .output()
        .assert_exit(2)
        .assert_contains("is not UTF-8: byte 23 (line 2, column 13)")
        .assert_not_contains("panicked");
}

#[test]
fn run_ids_carry_32_random_bits() {
    let scratch = Scratch::new();
    scratch.write("one.rhai", "step(\"a\", || 1);\n");
    let output = scratch.run("one.rhai").output();
    output.assert_success();
    let line = output
        .stderr_lines()
        .into_iter()
        .find(|line| line.contains("(run "))
        .expect("the journal line");
    let id = line.rsplit("(run ").next().unwrap().trim_end_matches(')');
    let suffix = id.rsplit('-').next().unwrap();
    assert_eq!(suffix.len(), 8, "{id}");
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}
