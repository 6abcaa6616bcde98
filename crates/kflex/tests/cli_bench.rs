//! `kflex bench datastructures` end to end: a quick run on the hash map writes a table, JSON
//! with every required field and an SVG with one bar per result.

mod common;
use common::cli::{kflex, stderr, stdout};

use std::collections::BTreeMap;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kflex-cli-bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

#[test]
fn quick_hash_run_writes_table_json_and_svg() {
    let json = scratch("ds.json");
    let svg = scratch("ds.svg");
    let o = kflex(&[
        "bench",
        "datastructures",
        "--quick",
        "--structures",
        "hash",
        "--engines",
        "native,kflex-jit,kflex-interp",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    assert!(
        out.contains("batches of 1024"),
        "the amortisation is stated: {out}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    let results = v["results"].as_array().expect("results");
    // hash x {update, lookup, delete} x {uniform, zipf} x 3 engines.
    assert_eq!(results.len(), 18, "{results:#?}");
    let mut by_engine: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut native_ns: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in results {
        assert_eq!(r["structure"], "hash");
        let op = r["op"].as_str().unwrap();
        assert!(["update", "lookup", "delete"].contains(&op), "{op}");
        let keys = r["keys"].as_str().unwrap();
        assert!(keys == "uniform" || keys == "zipf", "{keys}");
        let ns = r["ns_per_op"].as_f64().unwrap();
        let ratio = r["ratio_to_native"].as_f64().unwrap();
        assert!(ns > 0.0 && ns < 1e6, "{ns} ns/op");
        assert!(ratio > 0.0 && ratio.is_finite(), "ratio {ratio}");
        let cpu = r["cpu_ns_per_op"].as_f64().unwrap();
        assert!(cpu > 0.0 && cpu < 1e6, "{cpu} CPU ns/op");
        let engine = r["engine"].as_str().unwrap().to_string();
        if engine == "native" {
            assert_eq!(ratio, 1.0);
            native_ns.insert((op.into(), keys.into()), ns);
        }
        by_engine.entry(engine).or_default().push(ratio);
    }
    // ratio_to_native is native's ns/op of the same phase divided by the engine's.
    for r in results {
        let key = (
            r["op"].as_str().unwrap().to_string(),
            r["keys"].as_str().unwrap().to_string(),
        );
        let want = native_ns[&key] / r["ns_per_op"].as_f64().unwrap();
        assert!((r["ratio_to_native"].as_f64().unwrap() / want - 1.0).abs() < 1e-9);
    }
    assert_eq!(
        by_engine.keys().collect::<Vec<_>>(),
        ["kflex-interp", "kflex-jit", "native"]
    );
    // The summary is consistent with the results: geomean and minimum of each engine's ratios.
    for (engine, ratios) in &by_engine {
        let s = &v["summary"][engine];
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            (s["geomean_ratio"].as_f64().unwrap() / geo - 1.0).abs() < 1e-9,
            "{engine}"
        );
        assert_eq!(s["worst_ratio"].as_f64().unwrap(), worst, "{engine}");
    }
    // The interpreter is far slower than native code.
    assert!(
        v["summary"]["kflex-interp"]["geomean_ratio"]
            .as_f64()
            .unwrap()
            < 0.5
    );
    let emitted = v["guards"]["emitted"].as_u64().expect("guards.emitted");
    let elided = v["guards"]["elided"].as_u64().expect("guards.elided");
    assert!(emitted + elided > 0, "the hash programs access the heap");

    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg ") && text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<svg").count(), 1);
    assert_eq!(
        text.matches("<title>").count(),
        text.matches("</title>").count()
    );
    let bars = text.matches("<rect class=\"bar\"").count();
    assert_eq!(bars, results.len(), "one bar per result");
    for engine in by_engine.keys() {
        assert!(
            text.contains(&format!(">{engine}</text>")),
            "legend names {engine}"
        );
    }
    // The table has one row per op and stream, with a column per engine.
    let header = out.lines().find(|l| l.starts_with("structure")).unwrap();
    assert!(
        header.contains("native")
            && header.contains("kflex-jit")
            && header.contains("kflex-interp")
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("hash ")).count(),
        6,
        "{out}"
    );
}

#[test]
fn unknown_engine_or_structure_is_a_usage_error() {
    for args in [
        ["bench", "datastructures", "--engines", "jvm"],
        ["bench", "datastructures", "--structures", "btree"],
    ] {
        let o = kflex(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("unknown"), "{}", stderr(&o));
    }
}
