//! The TUI's state and its update function: every key and every result from the workers comes
//! in as a [`Msg`]; `update` changes the state and returns the [`Command`]s (database reads,
//! jobs to start) the runtime should carry out. No terminal and no I/O here, so all of it is
//! tested by value.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use facelab::jobs::{CaptureControl, CaptureEvent, TrainEvent};
use facelab::predict::Prediction;
use facelab::store::{RunRecord, StoredConfusion};
use facelab::train::EpochMetrics;

/// The screens reachable with Tab, and the ones opened from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Runs,
    Detail,
    Compare,
    Experiments,
    Predict,
    Capture,
}

/// Columns of the runs table, in the order `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Started,
    Id,
    Experiment,
    Status,
    ValAccuracy,
    ValLoss,
    Epochs,
    Duration,
}

impl SortColumn {
    pub const ALL: [SortColumn; 8] = [
        SortColumn::Started,
        SortColumn::Id,
        SortColumn::Experiment,
        SortColumn::Status,
        SortColumn::ValAccuracy,
        SortColumn::ValLoss,
        SortColumn::Epochs,
        SortColumn::Duration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SortColumn::Started => "started",
            SortColumn::Id => "id",
            SortColumn::Experiment => "experiment",
            SortColumn::Status => "status",
            SortColumn::ValAccuracy => "val acc",
            SortColumn::ValLoss => "val loss",
            SortColumn::Epochs => "epochs",
            SortColumn::Duration => "duration",
        }
    }

    fn next(self) -> SortColumn {
        let i = Self::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Newest, best and longest first; names in alphabetical order.
    fn compare(self, a: &RunRecord, b: &RunRecord) -> std::cmp::Ordering {
        let num = |x: Option<f64>, y: Option<f64>| {
            y.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&x.unwrap_or(f64::NEG_INFINITY))
        };
        match self {
            SortColumn::Started => b.started_at.cmp(&a.started_at),
            SortColumn::Id => a.id.cmp(&b.id),
            SortColumn::Experiment => a.experiment.cmp(&b.experiment),
            SortColumn::Status => a.status.as_str().cmp(b.status.as_str()),
            SortColumn::ValAccuracy => num(a.best_val_accuracy, b.best_val_accuracy),
            SortColumn::ValLoss => num(b.val_loss, a.val_loss),
            SortColumn::Epochs => b.epochs.cmp(&a.epochs),
            // Sorted on precomputed durations (see `refresh_order`): parsing dates per
            // comparison made sorting 10,000 runs take tens of milliseconds.
            SortColumn::Duration => std::cmp::Ordering::Equal,
        }
    }
}

/// A run opened on the detail screen.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub run: RunRecord,
    pub epochs: Vec<EpochMetrics>,
    pub confusion: Option<StoredConfusion>,
}

/// A background training run as the experiments screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub experiment: PathBuf,
    pub run_id: Option<String>,
    pub features: (u64, u64),
    pub total_epochs: usize,
    pub epochs: Vec<EpochMetrics>,
    pub outcome: Option<Result<String, String>>,
}

/// A line being typed: the filter, tags, notes, an image path, or capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Filter,
    Tags(String),
    Notes(String),
    ImagePath,
    Person,
    Source,
}

/// The capture screen: who is captured from where, and the live session.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureView {
    pub person: String,
    pub source: String,
    pub running: bool,
    pub paused: bool,
    pub saved: usize,
    pub target: Option<usize>,
    pub last: String,
    /// The latest preview and its frame number (the image widget redraws on a new number).
    pub preview: Option<(u64, image::RgbImage)>,
    pub frames: u64,
}

impl Default for CaptureView {
    fn default() -> Self {
        CaptureView {
            person: String::new(),
            source: "camera:0".into(),
            running: false,
            paused: false,
            saved: 0,
            target: None,
            last: String::new(),
            preview: None,
            frames: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PredictState {
    pub run_id: Option<String>,
    pub images: Vec<PathBuf>,
    pub selected: usize,
    pub shown: Option<PathBuf>,
    pub result: Option<Result<Prediction, String>>,
    pub pending: bool,
}

/// Everything the TUI shows.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub screen: Screen,
    pub runs: Vec<RunRecord>,
    /// Indices into `runs` of the filtered, sorted table: recomputed only when the runs, the
    /// sort or the filter change, so moving through 10,000 runs costs nothing.
    order: Vec<usize>,
    pub selected: usize,
    pub sort: SortColumn,
    pub filter: String,
    pub marked: BTreeSet<String>,
    pub detail: Option<RunDetail>,
    pub compare: Vec<RunDetail>,
    pub compare_all_keys: bool,
    pub experiments: Vec<PathBuf>,
    pub experiment_selected: usize,
    pub job: Option<JobView>,
    pub predict: PredictState,
    pub capture: CaptureView,
    pub input: Option<Input>,
    pub input_text: String,
    pub confirm_delete: Option<String>,
    pub show_help: bool,
    pub status: String,
    pub quit: bool,
    /// Counts frames for the random image pick (`r`); no clock, so tests stay repeatable.
    pub ticks: u64,
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
    PredictImages(Vec<PathBuf>),
    Predicted(Result<Prediction, String>),
    Capture(CaptureEvent),
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
    CancelTraining,
    DeleteRun(String),
    SetTags(String, Vec<String>),
    SetNotes(String, String),
    ListPredictImages(String),
    Predict(String, PathBuf),
    StartCapture { person: String, source: String },
    Capture(CaptureControl),
}

impl Default for App {
    fn default() -> Self {
        App {
            screen: Screen::Runs,
            runs: Vec::new(),
            order: Vec::new(),
            selected: 0,
            sort: SortColumn::Started,
            filter: String::new(),
            marked: BTreeSet::new(),
            detail: None,
            compare: Vec::new(),
            compare_all_keys: false,
            experiments: Vec::new(),
            experiment_selected: 0,
            job: None,
            predict: PredictState {
                run_id: None,
                images: Vec::new(),
                selected: 0,
                shown: None,
                result: None,
                pending: false,
            },
            capture: CaptureView::default(),
            input: None,
            input_text: String::new(),
            confirm_delete: None,
            show_help: false,
            status: String::new(),
            quit: false,
            ticks: 0,
        }
    }
}

impl App {
    /// The runs the table shows: filtered by the filter text, in the chosen order.
    pub fn visible_runs(&self) -> Vec<&RunRecord> {
        self.order.iter().map(|&i| &self.runs[i]).collect()
    }

    fn visible_count(&self) -> usize {
        self.order.len()
    }

    /// Recomputes the table's rows after the runs, the sort or the filter changed.
    fn refresh_order(&mut self) {
        let needle = self.filter.to_lowercase();
        let matches = |r: &RunRecord| {
            needle.is_empty()
                || [r.id.as_str(), r.experiment.as_str(), r.status.as_str()]
                    .into_iter()
                    .chain(r.tags.iter().map(String::as_str))
                    .any(|s| s.to_lowercase().contains(&needle))
        };
        let mut order: Vec<usize> = (0..self.runs.len())
            .filter(|&i| matches(&self.runs[i]))
            .collect();
        let durations: Vec<Option<f64>> = match self.sort {
            SortColumn::Duration => self.runs.iter().map(RunRecord::duration_seconds).collect(),
            _ => Vec::new(),
        };
        let (runs, sort) = (&self.runs, self.sort);
        order.sort_by(|&a, &b| {
            let by_column = match sort {
                SortColumn::Duration => durations[b]
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&durations[a].unwrap_or(f64::NEG_INFINITY)),
                _ => sort.compare(&runs[a], &runs[b]),
            };
            by_column.then_with(|| runs[a].id.cmp(&runs[b].id))
        });
        self.order = order;
    }

    pub fn selected_run(&self) -> Option<&RunRecord> {
        self.order.get(self.selected).map(|&i| &self.runs[i])
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Command> {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Tick => {
                self.ticks += 1;
                Vec::new()
            }
            Msg::RunsLoaded(runs) => {
                let keep = self.selected_run().map(|r| r.id.clone());
                self.runs = runs;
                self.refresh_order();
                if let Some(id) = keep {
                    if let Some(i) = self.visible_runs().iter().position(|r| r.id == id) {
                        self.selected = i;
                    }
                }
                self.clamp_selection();
                Vec::new()
            }
            Msg::DetailLoaded(detail) => {
                self.detail = Some(*detail);
                self.screen = Screen::Detail;
                Vec::new()
            }
            Msg::CompareLoaded(runs) => {
                self.compare = runs;
                self.screen = Screen::Compare;
                Vec::new()
            }
            Msg::ExperimentsListed(files) => {
                self.experiments = files;
                self.experiment_selected = self
                    .experiment_selected
                    .min(self.experiments.len().saturating_sub(1));
                Vec::new()
            }
            Msg::Train(event) => self.on_train_event(event),
            Msg::PredictImages(images) => {
                self.predict.images = images;
                self.predict.selected = 0;
                Vec::new()
            }
            Msg::Predicted(result) => {
                self.predict.pending = false;
                self.predict.result = Some(result);
                Vec::new()
            }
            Msg::Capture(event) => {
                self.on_capture_event(event);
                Vec::new()
            }
            Msg::Error(e) => {
                self.status = e;
                Vec::new()
            }
        }
    }

    fn on_capture_event(&mut self, event: CaptureEvent) {
        let c = &mut self.capture;
        match event {
            CaptureEvent::Frame {
                preview,
                outcome,
                saved,
                target,
            } => {
                c.frames += 1;
                c.preview = Some((c.frames, preview));
                c.last = outcome;
                c.saved = saved;
                c.target = target;
            }
            CaptureEvent::Finished(result) => {
                c.running = false;
                c.paused = false;
                c.last = match result {
                    Ok(n) => format!("finished: {n} crops of {} saved", c.person),
                    Err(e) => format!("error: {e}"),
                };
            }
        }
    }

    fn on_train_event(&mut self, event: TrainEvent) -> Vec<Command> {
        let Some(job) = self.job.as_mut() else {
            return Vec::new();
        };
        match event {
            TrainEvent::Features { done, total } => job.features = (done, total),
            TrainEvent::Started { run_id, epochs } => {
                job.run_id = Some(run_id);
                job.total_epochs = epochs;
                return vec![Command::LoadRuns];
            }
            TrainEvent::Epoch(m) => job.epochs.push(m),
            TrainEvent::Finished(result) => {
                job.outcome = Some(result.map(|s| match s.test_accuracy {
                    Some(acc) => format!("run {} finished: test accuracy {acc:.4}", s.run_id),
                    None => format!("run {} finished", s.run_id),
                }));
                return vec![Command::LoadRuns];
            }
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Vec::new();
        }
        if self.input.is_some() {
            return self.on_input_key(key);
        }
        if let Some(id) = self.confirm_delete.take() {
            if key.code == KeyCode::Char('y') {
                self.status = format!("deleted run {id}");
                self.marked.remove(&id);
                return vec![Command::DeleteRun(id), Command::LoadRuns];
            }
            self.status = "delete cancelled".into();
            return Vec::new();
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
            _ => {}
        }
        match self.screen {
            Screen::Runs => self.on_runs_key(key),
            Screen::Detail | Screen::Compare => self.on_opened_key(key),
            Screen::Experiments => self.on_experiments_key(key),
            Screen::Predict => self.on_predict_key(key),
            Screen::Capture => self.on_capture_key(key),
        }
    }

    fn next_tab(&mut self) -> Vec<Command> {
        self.screen = match self.screen {
            Screen::Runs | Screen::Detail | Screen::Compare => Screen::Experiments,
            Screen::Experiments => Screen::Predict,
            Screen::Predict => Screen::Capture,
            Screen::Capture => Screen::Runs,
        };
        match self.screen {
            Screen::Experiments => vec![Command::ListExperiments],
            Screen::Predict => self.enter_predict(),
            _ => Vec::new(),
        }
    }

    /// The predict screen works with the selected run.
    fn enter_predict(&mut self) -> Vec<Command> {
        match self.selected_run().map(|r| r.id.clone()) {
            Some(run) if Some(&run) != self.predict.run_id.as_ref() => {
                self.predict.run_id = Some(run.clone());
                self.predict.result = None;
                self.predict.shown = None;
                vec![Command::ListPredictImages(run)]
            }
            _ => Vec::new(),
        }
    }

    fn clamp_selection(&mut self) {
        let n = self.visible_count();
        self.selected = self.selected.min(n.saturating_sub(1));
    }

    fn on_runs_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let n = self.visible_count();
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(n.saturating_sub(1)),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = n.saturating_sub(1),
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.refresh_order();
                self.selected = 0;
            }
            KeyCode::Char('/') => {
                self.input = Some(Input::Filter);
                self.input_text = self.filter.clone();
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.refresh_order();
                self.clamp_selection();
            }
            KeyCode::Char(' ') => {
                if let Some(id) = self.selected_run().map(|r| r.id.clone()) {
                    if !self.marked.remove(&id) {
                        self.marked.insert(id);
                    }
                    self.selected = (self.selected + 1).min(n.saturating_sub(1));
                }
            }
            KeyCode::Char('c') => {
                if self.marked.len() >= 2 {
                    return vec![Command::LoadCompare(self.marked.iter().cloned().collect())];
                }
                self.status = "mark two or more runs with Space, then press c".into();
            }
            KeyCode::Enter => {
                if let Some(run) = self.selected_run() {
                    return vec![Command::LoadDetail(run.id.clone())];
                }
            }
            KeyCode::Char('d') => {
                if let Some(run) = self.selected_run().cloned() {
                    self.status = format!(
                        "delete run {}? press y to confirm, any other key to keep it",
                        run.id
                    );
                    self.confirm_delete = Some(run.id.clone());
                }
            }
            KeyCode::Char('t') => {
                if let Some(run) = self.selected_run().cloned() {
                    self.input_text = run.tags.join(", ");
                    self.input = Some(Input::Tags(run.id.clone()));
                }
            }
            KeyCode::Char('n') => {
                if let Some(run) = self.selected_run().cloned() {
                    self.input_text = run.notes.clone().unwrap_or_default();
                    self.input = Some(Input::Notes(run.id.clone()));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_input_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let input = self.input.clone().expect("called while typing");
        match key.code {
            KeyCode::Esc => {
                self.input = None;
                if input == Input::Filter {
                    self.filter.clear();
                    self.refresh_order();
                    self.clamp_selection();
                }
                Vec::new()
            }
            KeyCode::Enter => {
                self.input = None;
                let text = std::mem::take(&mut self.input_text);
                match input {
                    Input::Filter => Vec::new(),
                    Input::Tags(id) => {
                        let tags = text
                            .split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect();
                        vec![Command::SetTags(id, tags), Command::LoadRuns]
                    }
                    Input::Notes(id) => vec![Command::SetNotes(id, text), Command::LoadRuns],
                    Input::ImagePath => self.predict_path(PathBuf::from(text.trim())),
                    Input::Person => {
                        self.capture.person = text.trim().to_owned();
                        Vec::new()
                    }
                    Input::Source => {
                        self.capture.source = text.trim().to_owned();
                        Vec::new()
                    }
                }
            }
            KeyCode::Backspace => {
                self.input_text.pop();
                self.after_typing(&input);
                Vec::new()
            }
            KeyCode::Char(c) => {
                self.input_text.push(c);
                self.after_typing(&input);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The filter applies as it is typed.
    fn after_typing(&mut self, input: &Input) {
        if *input == Input::Filter {
            self.filter = self.input_text.clone();
            self.refresh_order();
            self.selected = 0;
        }
    }

    fn on_opened_key(&mut self, key: KeyEvent) -> Vec<Command> {
        match key.code {
            KeyCode::Esc | KeyCode::Backspace => self.screen = Screen::Runs,
            KeyCode::Char('a') if self.screen == Screen::Compare => {
                self.compare_all_keys = !self.compare_all_keys
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_experiments_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let n = self.experiments.len();
        let running = self.job.as_ref().is_some_and(|j| j.outcome.is_none());
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.experiment_selected = (self.experiment_selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.experiment_selected = self.experiment_selected.saturating_sub(1)
            }
            KeyCode::Esc => self.screen = Screen::Runs,
            KeyCode::Enter if running => {
                self.status = "a run is already going; x cancels it".into()
            }
            KeyCode::Enter => {
                if let Some(path) = self.experiments.get(self.experiment_selected).cloned() {
                    self.job = Some(JobView {
                        experiment: path.clone(),
                        run_id: None,
                        features: (0, 0),
                        total_epochs: 0,
                        epochs: Vec::new(),
                        outcome: None,
                    });
                    return vec![Command::StartTraining(path)];
                }
            }
            KeyCode::Char('x') if running => {
                self.status = "cancelling: the run stops after its current step".into();
                return vec![Command::CancelTraining];
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_predict_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let n = self.predict.images.len();
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.predict.selected = (self.predict.selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.predict.selected = self.predict.selected.saturating_sub(1)
            }
            KeyCode::Esc => self.screen = Screen::Runs,
            KeyCode::Enter => {
                if let Some(path) = self.predict.images.get(self.predict.selected).cloned() {
                    return self.predict_path(path);
                }
            }
            KeyCode::Char('r') if n > 0 => {
                // A cheap, repeatable scramble of the frame counter picks the "random" image.
                self.predict.selected = (self.ticks.wrapping_mul(2654435761) as usize) % n;
                self.ticks += 1;
                let path = self.predict.images[self.predict.selected].clone();
                return self.predict_path(path);
            }
            KeyCode::Char('p') => {
                self.input = Some(Input::ImagePath);
                self.input_text.clear();
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_capture_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let c = &mut self.capture;
        match key.code {
            KeyCode::Esc => self.screen = Screen::Runs,
            KeyCode::Char('n') if !c.running => {
                self.input_text = c.person.clone();
                self.input = Some(Input::Person);
            }
            KeyCode::Char('o') if !c.running => {
                self.input_text = c.source.clone();
                self.input = Some(Input::Source);
            }
            KeyCode::Enter if !c.running => {
                if c.person.trim().is_empty() {
                    self.status = "name the person first: n".into();
                    return Vec::new();
                }
                c.running = true;
                c.paused = false;
                c.saved = 0;
                c.last = "starting…".into();
                return vec![Command::StartCapture {
                    person: c.person.clone(),
                    source: c.source.clone(),
                }];
            }
            KeyCode::Char(' ') if c.running => {
                c.paused = !c.paused;
                return vec![Command::Capture(if c.paused {
                    CaptureControl::Pause
                } else {
                    CaptureControl::Resume
                })];
            }
            KeyCode::Char('s') if c.running => return vec![Command::Capture(CaptureControl::Skip)],
            KeyCode::Char('x') if c.running => return vec![Command::Capture(CaptureControl::Stop)],
            KeyCode::Char('n') | KeyCode::Char('o') => {
                self.status = "stop the capture (x) before changing it".into()
            }
            _ => {}
        }
        Vec::new()
    }

    fn predict_path(&mut self, path: PathBuf) -> Vec<Command> {
        let Some(run) = self.predict.run_id.clone() else {
            self.status = "select a finished run on the Runs screen first".into();
            return Vec::new();
        };
        self.predict.pending = true;
        self.predict.shown = Some(path.clone());
        self.predict.result = None;
        vec![Command::Predict(run, path)]
    }
}

#[cfg(test)]
pub mod tests_support {
    use super::*;
    use facelab::store::RunStatus;

    /// A finished run with the given figures, for tests.
    pub fn run(id: &str, experiment: &str, val_acc: f64, started: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            experiment: experiment.into(),
            status: RunStatus::Finished,
            started_at: started.into(),
            ended_at: Some(started.into()),
            seed: 42,
            config_hash: "c".into(),
            dataset_hash: "d".into(),
            weights_hash: "w".into(),
            epochs: 3,
            best_epoch: Some(2),
            loss: Some(0.1),
            accuracy: Some(0.9),
            val_loss: Some(1.0 - val_acc),
            val_accuracy: Some(val_acc),
            best_val_loss: Some(1.0 - val_acc),
            best_val_accuracy: Some(val_acc),
            test_accuracy: Some(val_acc),
            error: None,
            tags: vec!["baseline".into()],
            notes: None,
            config_yaml: format!("name: {experiment}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::run;
    use super::*;

    fn key(code: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn app_with_runs() -> App {
        let mut app = App::default();
        app.update(Msg::RunsLoaded(vec![
            run("aaaa1111", "seed", 0.5, "2026-01-01T00:00:00Z"),
            run("bbbb2222", "recommended", 0.9, "2026-01-03T00:00:00Z"),
            run("cccc3333", "seed", 0.7, "2026-01-02T00:00:00Z"),
        ]));
        app
    }

    #[test]
    fn newest_run_comes_first_and_s_cycles_the_sort() {
        let mut app = app_with_runs();
        assert_eq!(app.selected_run().unwrap().id, "bbbb2222");
        app.update(key(KeyCode::Char('s')));
        assert_eq!(app.sort, SortColumn::Id);
        assert_eq!(app.selected_run().unwrap().id, "aaaa1111");
        for _ in 0..3 {
            app.update(key(KeyCode::Char('s')));
        }
        assert_eq!(app.sort, SortColumn::ValAccuracy);
        let order: Vec<_> = app.visible_runs().iter().map(|r| r.id.clone()).collect();
        assert_eq!(order, ["bbbb2222", "cccc3333", "aaaa1111"]);
    }

    #[test]
    fn filter_narrows_as_typed_and_esc_clears_it() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Char('/')));
        for c in "recom".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        assert_eq!(app.visible_runs().len(), 1);
        app.update(key(KeyCode::Enter));
        assert_eq!(app.filter, "recom");
        app.update(key(KeyCode::Esc));
        assert_eq!(app.visible_runs().len(), 3);
    }

    #[test]
    fn enter_opens_the_selected_run_and_esc_goes_back() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Char('j')));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Command::LoadDetail("cccc3333".into())]
        );
        app.update(Msg::DetailLoaded(Box::new(RunDetail {
            run: run("cccc3333", "seed", 0.7, "x"),
            epochs: Vec::new(),
            confusion: None,
        })));
        assert_eq!(app.screen, Screen::Detail);
        app.update(key(KeyCode::Esc));
        assert_eq!(app.screen, Screen::Runs);
    }

    #[test]
    fn compare_needs_two_marked_runs() {
        let mut app = app_with_runs();
        assert!(app.update(key(KeyCode::Char('c'))).is_empty());
        assert!(app.status.contains("mark"));
        app.update(key(KeyCode::Char(' ')));
        app.update(key(KeyCode::Char(' ')));
        assert_eq!(
            app.update(key(KeyCode::Char('c'))),
            vec![Command::LoadCompare(vec![
                "bbbb2222".into(),
                "cccc3333".into()
            ])]
        );
    }

    #[test]
    fn delete_asks_first() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Char('d')));
        assert!(app.update(key(KeyCode::Char('n'))).is_empty());
        app.update(key(KeyCode::Char('d')));
        assert_eq!(
            app.update(key(KeyCode::Char('y'))),
            vec![Command::DeleteRun("bbbb2222".into()), Command::LoadRuns]
        );
    }

    #[test]
    fn tags_are_typed_comma_separated() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Char('t')));
        app.input_text.clear();
        for c in "best, orl".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![
                Command::SetTags("bbbb2222".into(), vec!["best".into(), "orl".into()]),
                Command::LoadRuns
            ]
        );
    }

    #[test]
    fn tab_cycles_screens_and_asks_for_their_data() {
        let mut app = app_with_runs();
        assert_eq!(
            app.update(key(KeyCode::Tab)),
            vec![Command::ListExperiments]
        );
        assert_eq!(
            app.update(key(KeyCode::Tab)),
            vec![Command::ListPredictImages("bbbb2222".into())]
        );
        assert_eq!(app.screen, Screen::Predict);
        app.update(Msg::PredictImages(vec!["a.png".into(), "b.png".into()]));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Command::Predict("bbbb2222".into(), "a.png".into())]
        );
        assert!(app.predict.pending);
        app.update(key(KeyCode::Tab));
        assert_eq!(app.screen, Screen::Capture);
        app.update(key(KeyCode::Tab));
        assert_eq!(app.screen, Screen::Runs);
    }

    #[test]
    fn a_training_job_runs_once_at_a_time_and_can_be_cancelled() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Tab));
        app.update(Msg::ExperimentsListed(vec!["experiments/seed.yaml".into()]));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Command::StartTraining("experiments/seed.yaml".into())]
        );
        assert!(app.update(key(KeyCode::Enter)).is_empty());
        app.update(Msg::Train(TrainEvent::Started {
            run_id: "dddd4444".into(),
            epochs: 3,
        }));
        assert_eq!(
            app.update(key(KeyCode::Char('x'))),
            vec![Command::CancelTraining]
        );
        app.update(Msg::Train(TrainEvent::Finished(Err(
            "training cancelled".into()
        ))));
        assert_eq!(
            app.job.as_ref().unwrap().outcome,
            Some(Err("training cancelled".into()))
        );
    }

    #[test]
    fn reloading_keeps_the_selected_run() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Char('j')));
        let mut runs = app.runs.clone();
        runs.push(run("eeee5555", "new", 0.1, "2026-02-01T00:00:00Z"));
        app.update(Msg::RunsLoaded(runs));
        assert_eq!(app.selected_run().unwrap().id, "cccc3333");
    }

    #[test]
    fn capture_needs_a_person_then_starts_pauses_skips_and_stops() {
        let mut app = app_with_runs();
        app.screen = Screen::Capture;
        assert!(app.update(key(KeyCode::Enter)).is_empty());
        assert!(app.status.contains("name the person"));
        app.update(key(KeyCode::Char('n')));
        for c in "eric".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        app.update(key(KeyCode::Enter));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Command::StartCapture {
                person: "eric".into(),
                source: "camera:0".into()
            }]
        );
        assert_eq!(
            app.update(key(KeyCode::Char(' '))),
            vec![Command::Capture(CaptureControl::Pause)]
        );
        assert_eq!(
            app.update(key(KeyCode::Char(' '))),
            vec![Command::Capture(CaptureControl::Resume)]
        );
        assert_eq!(
            app.update(key(KeyCode::Char('s'))),
            vec![Command::Capture(CaptureControl::Skip)]
        );
        app.update(Msg::Capture(CaptureEvent::Frame {
            preview: image::RgbImage::new(4, 3),
            outcome: "saved x.jpg".into(),
            saved: 1,
            target: Some(15),
        }));
        assert_eq!((app.capture.saved, app.capture.frames), (1, 1));
        assert_eq!(
            app.update(key(KeyCode::Char('x'))),
            vec![Command::Capture(CaptureControl::Stop)]
        );
        app.update(Msg::Capture(CaptureEvent::Finished(Ok(1))));
        assert!(!app.capture.running && app.capture.last.contains("1 crops of eric"));
    }

    #[test]
    fn q_quits_and_question_mark_toggles_help() {
        let mut app = app_with_runs();
        app.update(key(KeyCode::Char('?')));
        assert!(app.show_help);
        app.update(key(KeyCode::Char('q')));
        assert!(!app.show_help && !app.quit);
        app.update(key(KeyCode::Char('q')));
        assert!(app.quit);
    }
}
