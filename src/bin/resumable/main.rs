//! The `resumable` operator CLI (placeholder until issue 5).
fn main() {}
