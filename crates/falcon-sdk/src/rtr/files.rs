//! Put-files library, custom scripts library, and files extracted by `get`.

use bytes::Bytes;

use super::ByteStream;
use crate::FalconClient;
use crate::error::{Error, Result};

use super::http::{self, Part};
use super::limits::ArgumentError;
use super::types::{PutFile, Script, SessionFile};

const PUT_FILES_V1: &str = "/real-time-response/entities/put-files/v1";
const PUT_FILES_V2: &str = "/real-time-response/entities/put-files/v2";
const PUT_FILES_QUERY: &str = "/real-time-response/queries/put-files/v1";
const SCRIPTS_V1: &str = "/real-time-response/entities/scripts/v1";
const SCRIPTS_V2: &str = "/real-time-response/entities/scripts/v2";
const SCRIPTS_QUERY: &str = "/real-time-response/queries/scripts/v1";
const FILES_V2: &str = "/real-time-response/entities/file/v2";
const EXTRACTED: &str = "/real-time-response/entities/extracted-file-contents/v1";

/// Maximum length of a put-file or script `name`.
pub const MAX_NAME_LEN: usize = 32_766;
/// Maximum length of `comments_for_audit_log`.
pub const MAX_COMMENT_LEN: usize = 4_096;

fn check_len(what: &'static str, s: &str, max: usize) -> Result<()> {
    let len = s.chars().count();
    if len > max {
        return Err(ArgumentError::TooLong { what, len, max }.into());
    }
    Ok(())
}

/// A file to upload to the put-files library (`put <name>` then uses it on hosts).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewPutFile {
    /// Name used by `put` (defaults to the file name server-side when empty).
    pub name: String,
    /// Description (required by the API).
    pub description: String,
    /// Audit-log comment.
    pub comments_for_audit_log: Option<String>,
    /// File content. `Bytes` is cheap to clone, so each retry attempt rebuilds the multipart body.
    pub content: Bytes,
}

impl NewPutFile {
    /// A file with its name, description and content.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        content: impl Into<Bytes>,
    ) -> Self {
        NewPutFile {
            name: name.into(),
            description: description.into(),
            comments_for_audit_log: None,
            content: content.into(),
        }
    }

    /// Sets the audit-log comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comments_for_audit_log = Some(comment.into());
        self
    }
}

/// Who may run a custom script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    /// Only the uploader.
    Private,
    /// RTR administrators.
    Group,
    /// Active responders and administrators.
    Public,
}

impl Permission {
    fn as_str(self) -> &'static str {
        match self {
            Permission::Private => "private",
            Permission::Group => "group",
            Permission::Public => "public",
        }
    }
}

/// A script to upload to the custom scripts library (`runscript -CloudFile=<name>` then runs it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewScript {
    /// Script name.
    pub name: String,
    /// Description (required by the API).
    pub description: String,
    /// Script text.
    pub content: String,
    /// Who may run it (required by the API).
    pub permission: Permission,
    /// Platforms: `windows`, `mac`, `linux` (server default `windows`).
    pub platforms: Vec<String>,
    /// Audit-log comment.
    pub comments_for_audit_log: Option<String>,
}

impl NewScript {
    /// A script with name, description, text and permission.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        content: impl Into<String>,
        permission: Permission,
    ) -> Self {
        NewScript {
            name: name.into(),
            description: description.into(),
            content: content.into(),
            permission,
            platforms: Vec::new(),
            comments_for_audit_log: None,
        }
    }

    /// Adds a platform (`windows`, `mac`, `linux`).
    pub fn platform(mut self, p: impl Into<String>) -> Self {
        self.platforms.push(p.into());
        self
    }

    /// Sets the audit-log comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comments_for_audit_log = Some(comment.into());
        self
    }
}

/// A page of ids from a library listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdPage {
    /// The ids.
    pub ids: Vec<String>,
    /// Total number of matches, when reported.
    pub total: Option<u64>,
}

/// Listing parameters shared by the put-files and scripts libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// FQL filter.
    pub filter: Option<String>,
    /// Page size (the API pages at 100).
    pub limit: Option<u32>,
    /// Offset of the page.
    pub offset: Option<u64>,
    /// Sort, e.g. `created_timestamp|desc`.
    pub sort: Option<String>,
}

impl ListParams {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(f) = &self.filter {
            q.push(("filter", f.clone()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(o) = self.offset {
            q.push(("offset", o.to_string()));
        }
        if let Some(s) = &self.sort {
            q.push(("sort", s.clone()));
        }
        q
    }
}

async fn list_ids(client: &FalconClient, path: &str, params: &ListParams) -> Result<IdPage> {
    let (ids, total) =
        http::get_ids_page(client, path, &params.query(), http::Opts::idempotent()).await?;
    Ok(IdPage { ids, total })
}

fn ids_query<S: AsRef<str>>(ids: &[S]) -> Result<Vec<(&'static str, String)>> {
    let ids = super::limits::distinct_ids("ids", ids)?;
    Ok(ids.into_iter().map(|i| ("ids", i)).collect())
}

/// The put-files library: `client.rtr().put_files()`.
#[derive(Debug, Clone, Copy)]
pub struct PutFiles<'a> {
    pub(crate) client: &'a FalconClient,
}

impl PutFiles<'_> {
    /// Uploads a file (multipart). A retried attempt sends a freshly built, identical body.
    pub async fn upload(&self, file: &NewPutFile) -> Result<()> {
        if file.description.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "put-file description is required".into(),
            ));
        }
        check_len("put-file name", &file.name, MAX_NAME_LEN)?;
        if let Some(c) = &file.comments_for_audit_log {
            check_len("comments_for_audit_log", c, MAX_COMMENT_LEN)?;
        }
        let mut parts = vec![
            Part::file(
                "file",
                if file.name.is_empty() {
                    "file"
                } else {
                    &file.name
                },
                file.content.clone(),
            ),
            Part::text("description", &file.description),
        ];
        if !file.name.is_empty() {
            parts.push(Part::text("name", &file.name));
        }
        if let Some(c) = &file.comments_for_audit_log {
            parts.push(Part::text("comments_for_audit_log", c));
        }
        http::post_multipart(self.client, PUT_FILES_V1, parts).await
    }

    /// Lists put-file ids (one page; the API pages at 100).
    pub async fn list(&self, params: &ListParams) -> Result<IdPage> {
        list_ids(self.client, PUT_FILES_QUERY, params).await
    }

    /// Gets put-files by id.
    pub async fn get<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<PutFile>> {
        http::get_resources(
            self.client,
            PUT_FILES_V2,
            &ids_query(ids)?,
            http::Opts::idempotent(),
        )
        .await
    }

    /// Deletes one put-file.
    pub async fn delete(&self, id: &str) -> Result<()> {
        http::delete(self.client, PUT_FILES_V1, &[("ids", id.to_owned())]).await
    }
}

/// The custom scripts library: `client.rtr().scripts()`.
#[derive(Debug, Clone, Copy)]
pub struct Scripts<'a> {
    pub(crate) client: &'a FalconClient,
}

impl Scripts<'_> {
    /// Uploads a script (multipart, text `content`). A retried attempt sends a fresh identical body.
    pub async fn upload(&self, script: &NewScript) -> Result<()> {
        if script.description.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "script description is required".into(),
            ));
        }
        if script.name.trim().is_empty() {
            return Err(Error::InvalidArgument("script name is required".into()));
        }
        check_len("script name", &script.name, MAX_NAME_LEN)?;
        if let Some(c) = &script.comments_for_audit_log {
            check_len("comments_for_audit_log", c, MAX_COMMENT_LEN)?;
        }
        let mut parts = vec![
            Part::text("name", &script.name),
            Part::text("description", &script.description),
            Part::text("content", &script.content),
            Part::text("permission_type", script.permission.as_str()),
        ];
        for p in &script.platforms {
            parts.push(Part::text("platform", p));
        }
        if let Some(c) = &script.comments_for_audit_log {
            parts.push(Part::text("comments_for_audit_log", c));
        }
        http::post_multipart(self.client, SCRIPTS_V1, parts).await
    }

    /// Lists script ids (one page).
    pub async fn list(&self, params: &ListParams) -> Result<IdPage> {
        list_ids(self.client, SCRIPTS_QUERY, params).await
    }

    /// Gets scripts (with their content) by id.
    pub async fn get<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Script>> {
        http::get_resources(
            self.client,
            SCRIPTS_V2,
            &ids_query(ids)?,
            http::Opts::idempotent(),
        )
        .await
    }

    /// Deletes one script.
    pub async fn delete(&self, id: &str) -> Result<()> {
        http::delete(self.client, SCRIPTS_V1, &[("ids", id.to_owned())]).await
    }
}

/// Files extracted by `get` in a session.
pub(crate) async fn session_files(
    client: &FalconClient,
    session_id: &str,
) -> Result<Vec<SessionFile>> {
    http::get_resources(
        client,
        FILES_V2,
        &[("session_id", session_id.to_owned())],
        http::Opts::idempotent(),
    )
    .await
}

/// Deletes an extracted file from a session.
pub(crate) async fn delete_session_file(
    client: &FalconClient,
    session_id: &str,
    file_id: &str,
) -> Result<()> {
    http::delete(
        client,
        FILES_V2,
        &[
            ("ids", file_id.to_owned()),
            ("session_id", session_id.to_owned()),
        ],
    )
    .await
}

/// Downloads an extracted file: a 7-Zip archive (password `infected`) streamed as bytes.
pub(crate) async fn download(
    client: &FalconClient,
    session_id: &str,
    sha256: &str,
    filename: Option<&str>,
) -> Result<ByteStream> {
    if sha256.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "sha256 is empty (the file is not uploaded yet)".into(),
        ));
    }
    let mut q = vec![
        ("session_id", session_id.to_owned()),
        ("sha256", sha256.to_owned()),
    ];
    if let Some(f) = filename {
        q.push(("filename", f.to_owned()));
    }
    http::get_bytes(client, EXTRACTED, &q).await
}
