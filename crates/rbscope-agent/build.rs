fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Exports cfgs such as `ruby_gte_3_3` for version-gated code.
    let env = rb_sys_env::activate()?;
    // The Ruby whose headers this agent is compiled against: `Init_rbscope_agent` refuses to
    // run in any other minor release (the ABI, the struct layouts and the symbols differ).
    let (major, minor, teeny) = env.ruby_version().major_minor_teeny();
    println!("cargo:rustc-env=RBSCOPE_BUILT_FOR_RUBY={major}.{minor}");
    println!("cargo:rustc-env=RBSCOPE_BUILT_WITH_RUBY={major}.{minor}.{teeny}");
    println!("cargo:rerun-if-env-changed=RUBY");
    Ok(())
}
