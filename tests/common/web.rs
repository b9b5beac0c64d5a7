//! Helpers for the web pages' tests: forms and their CSRF fields.

/// `name="csrf" value="…"` of a page.
pub fn csrf(page: &str) -> String {
    let start = page.find(r#"name="csrf" value=""#).expect("no csrf field") + 19;
    page[start..].split('"').next().unwrap().to_owned()
}

pub fn post_form(
    srv: &super::Server,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> super::clients::HttpResponse {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    super::clients::curl_anonymous(
        "POST",
        &format!("{}{path}", srv.base_url()),
        &headers,
        Some(form.as_bytes()),
    )
}
