//! Turning names (jobs, task managers) into parts of file names.

/// `name` with every character other than ASCII letters, digits, `-` and `_` replaced by
/// `_`, so that it is safe in a file name on any file system.
pub fn file_name_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
