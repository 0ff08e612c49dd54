//! Build script: the git commit the binary is built from, for `rill_build_info{commit}` and
//! `rill --version`-style reports. `RILL_GIT_COMMIT` in the environment wins (builds from a
//! source tarball); without it `git rev-parse` is asked; with no git or no repository the commit
//! is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=RILL_GIT_COMMIT");
    let commit = std::env::var("RILL_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves (a commit or checkout); a worktree has its own git dir.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/logs/HEAD");
    }
    println!("cargo:rustc-env=RILL_GIT_COMMIT={commit}");
}
