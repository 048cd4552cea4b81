//! include/synapse.h is what C and C++ programs compile against: it must say exactly
//! what the code exports. This regenerates it with cbindgen and fails on any drift;
//! `SYNAPSE_BLESS=1 cargo test -p synapse-capi --test header` writes the new header.

use std::path::Path;

#[test]
fn the_checked_in_header_matches_the_code() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/synapse.h");
    if std::env::var_os("SYNAPSE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the code: regenerate it with \
         `SYNAPSE_BLESS=1 cargo test -p synapse-capi --test header` and commit it",
        path.display()
    );
}
