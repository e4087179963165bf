fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Exports cfgs such as `ruby_gte_3_3` for version-gated code.
    let _ = rb_sys_env::activate()?;
    Ok(())
}
