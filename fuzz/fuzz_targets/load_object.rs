//! Fuzzes the object loader: any byte string must load or fail with an error, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(obj) = kflex_object::Object::parse("fuzz", data) {
        // Exercise the lookups on whatever was loaded.
        for p in &obj.programs {
            let _ = p.line_at(0);
            let _ = p.func_at(p.insns.len().saturating_sub(1));
        }
        for m in &obj.maps {
            let _ = obj.map_index(&m.name);
        }
    }
});
