//! The TUI's state and its update function: every key and every result from the workers comes
//! in as a [`Msg`]; `update` changes the state and returns the [`Command`]s (database reads,
//! jobs to start) the runtime should carry out. No terminal and no I/O here, so all of it is
//! tested by value.
//!
//! Each screen keeps its own state struct with its key handler beside it (`runs`,
//! `experiments`, `predict`, `capture`); a handler answers with a [`Reaction`] saying what it
//! asks of the app beyond its own state (commands, a status line, a text field to open).

mod capture;
pub mod experiments;
mod predict;
mod recognize;
mod runs;
pub mod sweeps;
#[cfg(test)]
mod tests;
mod text_input;

use std::path::PathBuf;

use facelab::capture::source::SourceSpec;
use facelab::jobs::{
    CaptureControl, CaptureEvent, RecognizeControl, RecognizeEvent, SweepEvent, TrainEvent,
};
use facelab::predict::Prediction;
use facelab::store::{RunRecord, StoredConfusion};
use facelab::sweep::report::SweepReport;
use facelab::train::open_set::OpenSetReport;
use facelab::train::EpochMetrics;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use capture::CaptureState;
pub use experiments::ExperimentsState;
pub use predict::PredictState;
pub use recognize::RecognizeState;
pub use runs::RunsState;
pub use sweeps::SweepsState;
pub use text_input::TextInput;

/// The screens reachable with Tab, and the ones opened from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Runs,
    Detail,
    Compare,
    Experiments,
    Sweeps,
    Predict,
    Capture,
    Recognize,
}

/// A run opened on the detail screen.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub run: RunRecord,
    pub epochs: Vec<EpochMetrics>,
    pub confusion: Option<StoredConfusion>,
    pub open_set: Option<OpenSetReport>,
}

/// The runs being compared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompareState {
    pub runs: Vec<RunDetail>,
    /// Every config key, not only those that differ.
    pub all_keys: bool,
}

/// What a text field being typed is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Filter,
    Tags(String),
    Notes(String),
    ImagePath,
    Person,
    Source,
    RecognizeSource,
}

impl Field {
    pub fn prompt(&self) -> &'static str {
        match self {
            Field::Filter => "filter: ",
            Field::Tags(_) => "tags (comma separated): ",
            Field::Notes(_) => "notes: ",
            Field::ImagePath => "image path: ",
            Field::Person => "person: ",
            Field::Source | Field::RecognizeSource => "source (camera:N or dir:PATH): ",
        }
    }
}

/// A text field open in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub field: Field,
    pub input: TextInput,
}

/// What a screen's key handler asks of the app beyond its own state.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    pub commands: Vec<Command>,
    pub status: Option<String>,
    pub prompt: Option<Prompt>,
}

impl Reaction {
    pub fn command(command: Command) -> Self {
        Reaction {
            commands: vec![command],
            ..Reaction::default()
        }
    }

    pub fn status(text: impl Into<String>) -> Self {
        Reaction {
            status: Some(text.into()),
            ..Reaction::default()
        }
    }

    /// Opens a text field for `field`, showing `value`.
    pub fn prompt(field: Field, value: &str) -> Self {
        Reaction {
            prompt: Some(Prompt {
                field,
                input: TextInput::with_value(value),
            }),
            ..Reaction::default()
        }
    }

    pub fn with_commands(mut self, commands: Vec<Command>) -> Self {
        self.commands = commands;
        self
    }
}

/// Everything the TUI shows.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub screen: Screen,
    pub runs: RunsState,
    pub detail: Option<RunDetail>,
    pub compare: CompareState,
    pub experiments: ExperimentsState,
    pub sweeps: SweepsState,
    pub predict: PredictState,
    pub capture: CaptureState,
    pub recognize: RecognizeState,
    pub prompt: Option<Prompt>,
    pub show_help: bool,
    pub status: String,
    pub quit: bool,
    /// Counts ticks, for the random image pick (`r`) and the runs table's reload; no clock, so
    /// tests stay repeatable.
    pub ticks: u64,
}

impl Default for App {
    fn default() -> Self {
        App {
            screen: Screen::Runs,
            runs: RunsState::default(),
            detail: None,
            compare: CompareState::default(),
            experiments: ExperimentsState::default(),
            sweeps: SweepsState::default(),
            predict: PredictState::default(),
            capture: CaptureState::default(),
            recognize: RecognizeState::default(),
            prompt: None,
            show_help: false,
            status: String::new(),
            quit: false,
            ticks: 0,
        }
    }
}

/// Things that happen: keys, and what the workers report.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    Tick,
    RunsLoaded(Vec<RunRecord>),
    DetailLoaded(Box<RunDetail>),
    CompareLoaded(Vec<RunDetail>),
    ExperimentsListed(Vec<PathBuf>),
    Train(TrainEvent),
    SweepsLoaded(Vec<SweepReport>),
    Sweep(SweepEvent),
    PredictImages(Vec<PathBuf>),
    Predicted(Result<Prediction, String>),
    Capture(CaptureEvent),
    Recognize(RecognizeEvent),
    /// The editor closed on an experiment file: whether the file still checks out.
    Edited(PathBuf, Result<(), String>),
    /// The editor closed on a copy of a run's config (see [`Command::EditRerun`]).
    RerunEdited(PathBuf, Result<(), String>),
    Error(String),
}

/// Work for the runtime; its results come back as [`Msg`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    LoadRuns,
    LoadDetail(String),
    LoadCompare(Vec<String>),
    ListExperiments,
    StartTraining(PathBuf),
    LoadSweeps,
    /// Run (or resume) a sweep file in the background.
    StartSweep(PathBuf),
    CancelSweep,
    /// Open a workspace-relative file in the user's editor, the UI suspended meanwhile.
    EditFile(PathBuf),
    /// Open a copy of a run's resolved config in the editor, then train it if it checks out.
    EditRerun(String),
    CancelTraining,
    DeleteRun(String),
    SetTags(String, Vec<String>),
    SetNotes(String, String),
    ListPredictImages(String),
    Predict(String, PathBuf),
    StartCapture {
        person: String,
        source: SourceSpec,
    },
    Capture(CaptureControl),
    StartRecognize {
        run: String,
        source: SourceSpec,
    },
    Recognize(RecognizeControl),
}

/// A typed source (`camera:N` or `dir:PATH`), checked before it replaces `current`; a bad one
/// leaves it and says why.
fn set_source(current: &mut SourceSpec, text: &str) -> Reaction {
    match text.parse() {
        Ok(spec) => {
            *current = spec;
            Reaction::default()
        }
        Err(e) => Reaction::status(e.to_string()),
    }
}

impl App {
    pub fn selected_run(&self) -> Option<&RunRecord> {
        self.runs.selected_run()
    }

    /// A run the app holds: in the runs table, or open on the detail screen.
    pub fn run_record(&self, id: &str) -> Option<&RunRecord> {
        self.runs
            .all
            .iter()
            .chain(self.detail.as_ref().map(|d| &d.run))
            .find(|r| r.id == id)
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Command> {
        match msg {
            Msg::Key(key) => return self.on_key(key),
            Msg::Tick => self.ticks += 1,
            Msg::RunsLoaded(runs) => self.runs.load(runs),
            Msg::DetailLoaded(detail) => {
                self.detail = Some(*detail);
                self.screen = Screen::Detail;
            }
            Msg::CompareLoaded(runs) => {
                self.compare.runs = runs;
                self.screen = Screen::Compare;
            }
            Msg::ExperimentsListed(files) => self.experiments.listed(files),
            Msg::Train(event) => return self.experiments.on_train_event(event),
            Msg::SweepsLoaded(reports) => self.sweeps.load(reports),
            Msg::Sweep(event) => return self.sweeps.on_sweep_event(event),
            Msg::PredictImages(images) => self.predict.images_listed(images),
            Msg::Predicted(result) => self.predict.predicted(result),
            Msg::Capture(event) => self.capture.on_event(event),
            Msg::Recognize(event) => self.recognize.on_event(event),
            Msg::Edited(path, outcome) => {
                self.status = match outcome {
                    Ok(()) => format!("{} saved; it checks out", path.display()),
                    Err(e) => e,
                };
                return vec![Command::ListExperiments];
            }
            Msg::RerunEdited(path, outcome) => return self.rerun(path, outcome),
            Msg::Error(e) => self.status = e,
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Vec::new();
        }
        if let Some(prompt) = self.prompt.take() {
            return self.on_prompt_key(prompt, key);
        }
        if let Some(id) = self.runs.confirm_delete.take() {
            let reaction = self.runs.on_confirm_key(key, id);
            return self.apply(reaction);
        }
        if self.show_help {
            self.show_help = false;
            return Vec::new();
        }
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return Vec::new();
            }
            KeyCode::Char('?') => {
                self.show_help = true;
                return Vec::new();
            }
            KeyCode::Tab => return self.next_tab(),
            // Esc stops a running stream before it leaves the screen.
            KeyCode::Esc if self.screen == Screen::Recognize && self.recognize.running => {}
            KeyCode::Esc if self.screen != Screen::Runs => {
                self.screen = Screen::Runs;
                return Vec::new();
            }
            _ => {}
        }
        let reaction = match self.screen {
            Screen::Runs => self.runs.on_key(key),
            Screen::Detail => self.on_detail_key(key),
            Screen::Compare => self.on_compare_key(key),
            Screen::Experiments => self.on_experiments_key(key),
            Screen::Sweeps => self.sweeps.on_key(key),
            Screen::Predict => {
                // Each key moves the random pick on, so two `r`s in a row differ.
                self.ticks += 1;
                self.predict.on_key(key, self.ticks)
            }
            Screen::Capture => self.capture.on_key(key),
            Screen::Recognize => self.recognize.on_key(key),
        };
        self.apply(reaction)
    }

    /// Enter on a sweep file starts the sweep and shows it on the Sweeps screen; every other
    /// key is the Experiments screen's own.
    fn on_experiments_key(&mut self, key: KeyEvent) -> Reaction {
        let file = self
            .experiments
            .files
            .get(self.experiments.selected)
            .cloned();
        match file {
            Some(file)
                if key.code == KeyCode::Enter && facelab::workspace::is_sweep_file(&file) =>
            {
                if self.sweeps.running() {
                    return Reaction::status("a sweep is already going; x on Sweeps stops it");
                }
                self.sweeps.job = Some(sweeps::SweepJobView::new(file.clone()));
                self.screen = Screen::Sweeps;
                Reaction::default()
                    .with_commands(vec![Command::StartSweep(file), Command::LoadSweeps])
            }
            _ => self.experiments.on_key(key),
        }
    }

    fn on_detail_key(&mut self, key: KeyEvent) -> Reaction {
        match key.code {
            KeyCode::Backspace => self.screen = Screen::Runs,
            KeyCode::Char('R') => {
                if let Some(detail) = &self.detail {
                    return Reaction::command(Command::EditRerun(detail.run.id.clone()));
                }
            }
            _ => {}
        }
        Reaction::default()
    }

    /// After the editor closed on a run's config: train it on the Experiments screen, or say
    /// what is wrong with it.
    fn rerun(&mut self, file: PathBuf, outcome: Result<(), String>) -> Vec<Command> {
        match outcome {
            Err(e) => self.status = e,
            Ok(()) if self.experiments.running() => {
                self.status = "a run is already going; x on Experiments cancels it".into();
            }
            Ok(()) => {
                self.screen = Screen::Experiments;
                self.experiments.job = Some(experiments::JobView::new(file.clone()));
                return vec![Command::StartTraining(file)];
            }
        }
        Vec::new()
    }

    fn on_compare_key(&mut self, key: KeyEvent) -> Reaction {
        match key.code {
            KeyCode::Backspace => self.screen = Screen::Runs,
            KeyCode::Char('a') => self.compare.all_keys = !self.compare.all_keys,
            _ => {}
        }
        Reaction::default()
    }

    /// Takes in what a screen's handler asked for.
    fn apply(&mut self, reaction: Reaction) -> Vec<Command> {
        if let Some(status) = reaction.status {
            self.status = status;
        }
        if reaction.prompt.is_some() {
            self.prompt = reaction.prompt;
        }
        reaction.commands
    }

    fn next_tab(&mut self) -> Vec<Command> {
        self.screen = match self.screen {
            Screen::Runs | Screen::Detail | Screen::Compare => Screen::Experiments,
            Screen::Experiments => Screen::Sweeps,
            Screen::Sweeps => Screen::Predict,
            Screen::Predict => Screen::Capture,
            Screen::Capture => Screen::Recognize,
            Screen::Recognize => Screen::Runs,
        };
        match self.screen {
            Screen::Experiments => vec![Command::ListExperiments],
            Screen::Sweeps => vec![Command::LoadSweeps],
            Screen::Predict => {
                let run = self.selected_run().map(|r| r.id.clone());
                self.predict.enter(run)
            }
            Screen::Recognize => {
                let run = self.selected_run().map(|r| r.id.clone());
                self.recognize.enter(run);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A key while a text field is open: Enter commits it, Esc drops it, others edit it.
    fn on_prompt_key(&mut self, mut prompt: Prompt, key: KeyEvent) -> Vec<Command> {
        match key.code {
            KeyCode::Esc => {
                if prompt.field == Field::Filter {
                    self.runs.set_filter("");
                }
                Vec::new()
            }
            KeyCode::Enter => self.commit(prompt),
            _ => {
                if prompt.input.handle(key) && prompt.field == Field::Filter {
                    self.runs.set_filter(prompt.input.value());
                }
                self.prompt = Some(prompt);
                Vec::new()
            }
        }
    }

    fn commit(&mut self, prompt: Prompt) -> Vec<Command> {
        let text = prompt.input.value();
        let reaction = match prompt.field {
            Field::Filter => Reaction::default(),
            Field::Tags(id) => Reaction::default().with_commands(vec![
                Command::SetTags(id, runs::parse_tags(text)),
                Command::LoadRuns,
            ]),
            Field::Notes(id) => Reaction::default().with_commands(vec![
                Command::SetNotes(id, text.to_owned()),
                Command::LoadRuns,
            ]),
            Field::ImagePath => self.predict.predict_path(PathBuf::from(text.trim())),
            Field::Person => {
                self.capture.person = text.trim().to_owned();
                Reaction::default()
            }
            Field::Source => set_source(&mut self.capture.source, text),
            Field::RecognizeSource => set_source(&mut self.recognize.source, text),
        };
        self.apply(reaction)
    }
}
