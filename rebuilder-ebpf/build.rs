//! Compiles the XDP program with clang and checks the Rust ABI mirror against the C header.
//!
//! The object lands in `$OUT_DIR/rebuilder.bpf.o`. The layout check turns every offset and
//! constant of `src/abi.rs` into a `_Static_assert` against `src/rebuilder_abi.h`, compiled for
//! the BPF target, so a divergence fails the build with the field's name.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[path = "src/abi.rs"]
#[allow(dead_code)]
mod abi;

const INSTALL_HINT: &str =
    "install Debian's `clang-19 libbpf-dev` (apt-get install clang-19 libbpf-dev), \
     or point REBUILDER_CLANG at a clang (14 or newer) that targets bpf";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // cargo shows a failing build script's stderr; say exactly what is missing.
            eprintln!("error: rebuilder-ebpf: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let src = manifest.join("src");
    for file in [
        "rebuilder.bpf.c",
        "drop.bpf.c",
        "xsk.bpf.c",
        "rebuilder_abi.h",
        "abi.rs",
    ] {
        println!("cargo:rerun-if-changed={}", src.join(file).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=REBUILDER_CLANG");

    let clang = find_clang()?;
    let multiarch = multiarch_include();
    let mut common: Vec<String> = vec![
        "-target".into(),
        "bpf".into(),
        // alu32: 32-bit bounds stay on the register that was checked, which the verifier needs
        // for the payload copy length (v3 needs kernel 5.1; bpf_xdp_load_bytes needs 5.18).
        "-mcpu=v3".into(),
        "-O2".into(),
        "-g".into(),
        "-Wall".into(),
        format!("-I{}", src.display()),
    ];
    if let Some(dir) = multiarch {
        common.push(format!("-I{}", dir.display()));
    }

    check_libbpf_headers(&clang, &common, &out)?;
    check_layout(&clang, &common, &out)?;

    // The program, the bare XDP_DROP ceiling the benchmark compares it with, and the AF_XDP
    // redirect of the experiment in experiments/afxdp (`afxdp-rx`).
    for name in ["rebuilder", "drop", "xsk"] {
        compile(
            &clang,
            &common,
            &src.join(format!("{name}.bpf.c")),
            &out.join(format!("{name}.bpf.o")),
        )?;
    }
    Ok(())
}

fn compile(clang: &Path, common: &[String], source: &Path, object: &Path) -> Result<(), String> {
    let output = Command::new(clang)
        .args(common)
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .output()
        .map_err(|e| format!("running {}: {e}", clang.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed to compile {}:\n{}",
            clang.display(),
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Warnings from another clang version should be seen, not fail the build.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("cargo:warning={line}");
    }
    Ok(())
}

/// `REBUILDER_CLANG`, else the newest versioned clang from 19 down to 14, else plain `clang`.
fn find_clang() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os("REBUILDER_CLANG") {
        let path = PathBuf::from(path);
        return if runs(&path) {
            Ok(path)
        } else {
            Err(format!(
                "REBUILDER_CLANG={} does not run; {INSTALL_HINT}",
                path.display()
            ))
        };
    }
    let candidates = (14..=19)
        .rev()
        .map(|v| format!("clang-{v}"))
        .chain(["clang".to_string()]);
    for name in candidates {
        let path = PathBuf::from(&name);
        if runs(&path) {
            return Ok(path);
        }
    }
    Err(format!(
        "no clang found (looked for clang-19 .. clang-14, clang); {INSTALL_HINT}"
    ))
}

fn runs(clang: &Path) -> bool {
    Command::new(clang)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Debian keeps `asm/types.h` (pulled in by the kernel UAPI headers) under a multiarch
/// directory that `-target bpf` does not search.
fn multiarch_include() -> Option<PathBuf> {
    let triple = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let arch = env::var("CARGO_CFG_TARGET_ARCH").ok()?;
            let arch = match arch.as_str() {
                "x86" => "i386".to_string(),
                other => other.to_string(),
            };
            Some(format!("{arch}-linux-gnu"))
        })?;
    let dir = PathBuf::from("/usr/include").join(triple);
    dir.is_dir().then_some(dir)
}

fn check_libbpf_headers(clang: &Path, common: &[String], out: &Path) -> Result<(), String> {
    let probe = out.join("libbpf_probe.c");
    fs::write(
        &probe,
        "#include <linux/types.h>\n#include <bpf/bpf_helpers.h>\n",
    )
    .map_err(|e| format!("writing {}: {e}", probe.display()))?;
    let output = Command::new(clang)
        .args(common)
        .arg("-fsyntax-only")
        .arg(&probe)
        .output()
        .map_err(|e| format!("running {}: {e}", clang.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "bpf/bpf_helpers.h (libbpf) or the kernel UAPI headers are missing; {INSTALL_HINT}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Generates one `_Static_assert` per fact of `src/abi.rs` and compiles them against the C
/// header for the BPF target.
fn check_layout(clang: &Path, common: &[String], out: &Path) -> Result<(), String> {
    let mut c = String::from("#include <stddef.h>\n#include \"rebuilder_abi.h\"\n\n");
    let mut fact = |cond: String, what: String| {
        // Writing to a String cannot fail.
        let _ = writeln!(c, "_Static_assert({cond}, \"ABI mismatch: {what}\");");
    };

    fact(
        format!("RB_ABI_VERSION == {}", abi::ABI_VERSION),
        "ABI_VERSION".into(),
    );
    fact(
        format!("RB_FAMILY_IPV4 == {}", abi::FAMILY_IPV4),
        "FAMILY_IPV4".into(),
    );
    fact(
        format!("RB_FAMILY_IPV6 == {}", abi::FAMILY_IPV6),
        "FAMILY_IPV6".into(),
    );
    for (i, class) in abi::PAYLOAD_CLASSES.iter().enumerate() {
        fact(
            format!("RB_PAYLOAD_CLASS_{i} == {class}"),
            format!("PAYLOAD_CLASSES[{i}]"),
        );
    }
    fact(
        format!("RB_PAYLOAD_MAX == {}", abi::PAYLOAD_MAX),
        "PAYLOAD_MAX".into(),
    );
    fact(
        format!("RB_RECORD_HEADER_LEN == {}", abi::RECORD_HEADER_LEN),
        "RECORD_HEADER_LEN".into(),
    );
    fact(
        format!(
            "sizeof(struct rb_record) == {}",
            std::mem::size_of::<abi::RecordHeader>()
        ),
        "size of RecordHeader".into(),
    );
    fact(
        format!(
            "_Alignof(struct rb_record) == {}",
            std::mem::align_of::<abi::RecordHeader>()
        ),
        "alignment of RecordHeader".into(),
    );
    for (field, offset, size) in abi::RECORD_FIELDS {
        fact(
            format!("offsetof(struct rb_record, {field}) == {offset}"),
            format!("offset of RecordHeader::{field}"),
        );
        fact(
            format!("sizeof(((struct rb_record *)0)->{field}) == {size}"),
            format!("size of RecordHeader::{field}"),
        );
    }
    // Offsets and sizes agree field by field; the fields must also tile the struct, or the C
    // struct has a field the Rust one lacks.
    let tiled: usize = abi::RECORD_FIELDS.iter().map(|&(_, _, size)| size).sum();
    fact(
        format!("{tiled} == sizeof(struct rb_record)"),
        "struct rb_record has fields RecordHeader lacks".into(),
    );
    for counter in abi::Counter::ALL {
        let c_name = format!("RB_CNT_{}", counter.name().to_ascii_uppercase());
        fact(
            format!("{c_name} == {}", counter.index()),
            format!("Counter::{counter:?}"),
        );
    }
    fact(
        format!("RB_CNT_MAX == {}", abi::Counter::COUNT),
        "Counter::COUNT".into(),
    );
    fact(
        format!("RB_VNI_ALLOW_MAX == {}", abi::VNI_ALLOW_MAX),
        "VNI_ALLOW_MAX".into(),
    );
    fact(
        format!("RB_PORT_WORDS == {}", abi::PORT_WORDS),
        "PORT_WORDS".into(),
    );
    fact(
        format!("RB_RECORDS_DEFAULT_SIZE == {}", abi::RECORDS_DEFAULT_SIZE),
        "RECORDS_DEFAULT_SIZE".into(),
    );
    fact(
        format!("RB_VXLAN_PORTS == {}", abi::VXLAN_PORTS_MAX),
        "VXLAN_PORTS_MAX".into(),
    );
    fact(
        format!("RB_VXLAN_PORT_DEFAULT == {}", abi::VXLAN_PORT_DEFAULT),
        "VXLAN_PORT_DEFAULT".into(),
    );
    let strings = [
        ("RB_MAP_RECORDS", abi::MAP_RECORDS),
        ("RB_MAP_COUNTERS", abi::MAP_COUNTERS),
        ("RB_MAP_VNI_ALLOW", abi::MAP_VNI_ALLOW),
        ("RB_MAP_INNER_PORTS", abi::MAP_INNER_PORTS),
    ];
    for (macro_name, value) in strings {
        // String literals cannot be compared in a constant expression, but their sizes and
        // characters can: clang folds indexing into a literal.
        fact(
            format!("sizeof({macro_name}) == {}", value.len() + 1),
            format!("{macro_name} length"),
        );
        for (i, b) in value.bytes().enumerate() {
            fact(
                format!("{macro_name}[{i}] == {b}"),
                format!("{macro_name}[{i}]"),
            );
        }
    }

    let check = out.join("abi_layout_check.c");
    fs::write(&check, &c).map_err(|e| format!("writing {}: {e}", check.display()))?;
    let output = Command::new(clang)
        .args(common)
        .arg("-fsyntax-only")
        .arg(&check)
        .output()
        .map_err(|e| format!("running {}: {e}", clang.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "src/abi.rs and src/rebuilder_abi.h disagree (generated check: {}):\n{}",
            check.display(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
