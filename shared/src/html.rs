//! Escaping text for HTML, for every page either binary serves.

/// Escapes text for HTML content and attribute values. Control and
/// text-direction characters (a name taken in before they were refused)
/// would make text read otherwise than it is stored: they show as the
/// replacement mark.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if crate::booking::is_hidden(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
