//! The terminal UI (`facelab` with no arguments, or `facelab tui`): a ratatui + crossterm app
//! over the library. One channel of [`Msg`]s feeds the loop: keys from an input thread, a tick,
//! database results from a store thread, and events from training and prediction jobs. The
//! loop applies each message to the [`App`] (pure), hands the returned commands to the workers,
//! and draws. `ratatui::init` restores the terminal on every exit, a panic included.

pub mod app;
mod editor;
mod view;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facelab::capture::source::SourceSpec;
use facelab::jobs::{self, guarded, CancelHandle, CaptureControl, RecognizeControl};
use facelab::run::{delete_run, mark_dead_runs, open_store, test_images};
use facelab::store::RunStore;
use facelab::sweep::report::SweepReport;
use facelab::workspace::Workspace;
use ratatui::crossterm::event::{Event, KeyEventKind};
use ratatui::Terminal;
use ratatui_image::picker::Picker;

use app::{App, Command, Msg, RunDetail};
use view::ImageView;

const TICK: Duration = Duration::from_millis(250);
/// Ticks between reloads of the runs table, so other processes' runs show up within a second.
const TICKS_PER_RELOAD: u64 = 4;

pub fn run(
    workspace: Workspace,
    weights: Option<PathBuf>,
    memory_limit: u64,
) -> anyhow::Result<()> {
    // Fail before touching the terminal if the store cannot be opened.
    drop(open_store(&workspace)?);
    let mut terminal = ratatui::init();
    report_panics_of_the_ui_thread_only();
    let picker = image_picker();
    let result = event_loop(
        &mut terminal,
        workspace,
        weights,
        memory_limit,
        ImageView::new(picker),
    );
    ratatui::restore();
    result
}

/// ratatui's panic hook restores the terminal whatever thread panicked; a worker's panic,
/// though, is caught by its job ([`guarded`]) and shown as an error while the UI goes on, so it
/// must neither leave full-screen mode nor print over the screen. Only a panic of the UI
/// thread itself goes to ratatui's hook (terminal restored, message printed).
fn report_panics_of_the_ui_thread_only() {
    let restore_and_print = std::panic::take_hook();
    let ui_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui_thread {
            restore_and_print(info);
        }
    }));
}

/// Asks the terminal for its image protocol only where the environment names a terminal that
/// answers: the query reads stdin on a thread of its own, and where no answer comes (tmux,
/// plain SSH terminals) that thread would go on eating keystrokes. Elsewhere, half-blocks
/// (which any terminal shows) or what the environment reveals. FACELAB_IMAGES=query forces the
/// query, FACELAB_IMAGES=halfblocks forbids it.
fn image_picker() -> Picker {
    let fallback = || Picker::halfblocks();
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let capable = !var("KITTY_WINDOW_ID").is_empty()
        || var("TERM").contains("kitty")
        || ["WezTerm", "iTerm.app", "ghostty"].contains(&var("TERM_PROGRAM").as_str());
    let query = match var("FACELAB_IMAGES").as_str() {
        "query" => true,
        "halfblocks" => false,
        _ => capable && var("TMUX").is_empty(),
    };
    if query {
        Picker::from_query_stdio().unwrap_or_else(|_| fallback())
    } else {
        fallback()
    }
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    ws: Workspace,
    weights: Option<PathBuf>,
    memory_limit: u64,
    mut image: ImageView,
) -> anyhow::Result<()> {
    let (tx, rx) = channel();
    let gate = Arc::new(editor::InputGate::default());
    spawn_input_thread(tx.clone(), Arc::clone(&gate));
    spawn_tick_thread(tx.clone());
    let store_tx = spawn_store_thread(ws.clone(), tx.clone());
    let mut runtime = Runtime {
        ws,
        weights,
        memory_limit,
        tx,
        store_tx,
        job: None,
        sweep: None,
        capture: None,
        recognize: None,
    };
    let mut app = App::default();
    runtime.execute(Command::LoadRuns);
    loop {
        terminal.draw(|f| view::render(f, &app, &mut image))?;
        let first = rx.recv()?;
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            let reload = msg == Msg::Tick && (app.ticks + 1) % TICKS_PER_RELOAD == 0;
            for command in app.update(msg) {
                if let Command::EditFile(file) = command {
                    let outcome = editor::edit(terminal, &gate, &runtime.ws.root().join(&file))?;
                    let _ = runtime.tx.send(Msg::Edited(file, outcome));
                    continue;
                }
                if let Command::EditRerun(run_id) = command {
                    // The app holds the run's record, resolved config included.
                    let written = app
                        .run_record(&run_id)
                        .ok_or_else(|| format!("run {run_id} is no longer listed"))
                        .and_then(|run| {
                            facelab::run::rerun_file(&runtime.ws, run).map_err(|e| e.to_string())
                        });
                    let msg = match written {
                        Ok(file) => {
                            let outcome = editor::edit(terminal, &gate, &file)?;
                            Msg::RerunEdited(file, outcome)
                        }
                        Err(e) => Msg::Error(e),
                    };
                    let _ = runtime.tx.send(msg);
                    continue;
                }
                runtime.execute(command);
            }
            if reload {
                runtime.execute(Command::LoadRuns);
            }
        }
        if app.quit {
            for job in runtime.job.iter().chain(&runtime.sweep) {
                job.cancel();
            }
            if let Some(capture) = &runtime.capture {
                let _ = capture.send(CaptureControl::Stop);
            }
            if let Some(recognize) = &runtime.recognize {
                let _ = recognize.send(RecognizeControl::Stop);
            }
            return Ok(());
        }
    }
}

fn spawn_input_thread(tx: Sender<Msg>, gate: Arc<editor::InputGate>) {
    std::thread::spawn(move || loop {
        match gate.next_event() {
            Ok(Some(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                if tx.send(Msg::Key(key)).is_err() {
                    return;
                }
            }
            // A resize needs only a redraw, which any message brings.
            Ok(Some(Event::Resize(..))) => {
                let _ = tx.send(Msg::Tick);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    });
}

fn spawn_tick_thread(tx: Sender<Msg>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(TICK);
        if tx.send(Msg::Tick).is_err() {
            return;
        }
    });
}

/// Database work runs on its own thread with its own connection, so the UI never waits on it.
fn spawn_store_thread(ws: Workspace, tx: Sender<Msg>) -> Sender<Command> {
    let (cmd_tx, cmd_rx) = channel::<Command>();
    std::thread::spawn(move || {
        let store = match open_store(&ws) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Msg::Error(e.to_string()));
                return;
            }
        };
        for command in cmd_rx {
            let msg = guarded(|| serve(&store, &ws, command)).unwrap_or_else(Msg::Error);
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    cmd_tx
}

/// Carries out one database command and says what came of it.
fn serve(store: &RunStore, ws: &Workspace, command: Command) -> anyhow::Result<Msg> {
    Ok(match command {
        Command::LoadRuns => {
            mark_dead_runs(store, ws)?;
            Msg::RunsLoaded(store.runs()?)
        }
        Command::LoadDetail(id) => Msg::DetailLoaded(Box::new(load_detail(store, &id)?)),
        Command::LoadCompare(ids) => Msg::CompareLoaded(
            ids.iter()
                .map(|id| load_detail(store, id))
                .collect::<Result<_, _>>()?,
        ),
        Command::DeleteRun(id) => {
            delete_run(store, ws, &id)?;
            Msg::RunsLoaded(store.runs()?)
        }
        Command::SetTags(id, tags) => {
            store.set_tags(&id, &tags)?;
            Msg::RunsLoaded(store.runs()?)
        }
        Command::SetNotes(id, notes) => {
            store.set_notes(&id, &notes)?;
            Msg::RunsLoaded(store.runs()?)
        }
        Command::ListExperiments => Msg::ExperimentsListed(ws.experiment_files()),
        Command::LoadSweeps => Msg::SweepsLoaded(
            store
                .sweeps()?
                .iter()
                .map(|s| SweepReport::load(store, &s.id))
                .collect::<Result<_, _>>()?,
        ),
        Command::ListPredictImages(id) => Msg::PredictImages(test_images(ws, &store.run(&id)?)?),
        other => Msg::Error(format!("not a store command: {other:?}")),
    })
}

fn load_detail(store: &RunStore, id: &str) -> facelab::Result<RunDetail> {
    Ok(RunDetail {
        run: store.run(id)?,
        epochs: store.epochs(id)?,
        confusion: store.confusion(id)?,
        open_set: store.open_set(id)?,
    })
}

/// Sends commands where they belong: the store thread, or a job.
struct Runtime {
    ws: Workspace,
    weights: Option<PathBuf>,
    memory_limit: u64,
    tx: Sender<Msg>,
    store_tx: Sender<Command>,
    job: Option<CancelHandle>,
    sweep: Option<CancelHandle>,
    capture: Option<Sender<CaptureControl>>,
    recognize: Option<Sender<RecognizeControl>>,
}

impl Runtime {
    fn execute(&mut self, command: Command) {
        match command {
            Command::StartTraining(path) => self.start_training(&path),
            Command::StartSweep(path) => {
                let job = jobs::spawn_sweep(
                    self.ws.clone(),
                    path,
                    self.weights.clone(),
                    self.memory_limit,
                );
                self.sweep = Some(job.cancel);
                forward(job.events, self.tx.clone(), Msg::Sweep);
            }
            Command::CancelSweep => {
                if let Some(sweep) = &self.sweep {
                    sweep.cancel();
                }
            }
            Command::CancelTraining => {
                if let Some(job) = &self.job {
                    job.cancel();
                }
            }
            Command::StartCapture { person, source } => self.start_capture(person, source),
            Command::Capture(control) => {
                if let Some(capture) = &self.capture {
                    let _ = capture.send(control);
                }
            }
            Command::StartRecognize { run, source } => {
                let job =
                    jobs::spawn_recognition(self.ws.clone(), run, source, self.weights.clone());
                self.recognize = Some(job.control);
                forward(job.events, self.tx.clone(), Msg::Recognize);
            }
            Command::Recognize(control) => {
                if let Some(recognize) = &self.recognize {
                    let _ = recognize.send(control);
                }
            }
            Command::Predict(run_id, image) => {
                let rx =
                    jobs::spawn_prediction(self.ws.clone(), run_id, image, self.weights.clone());
                forward(rx, self.tx.clone(), Msg::Predicted);
            }
            store_command => {
                let _ = self.store_tx.send(store_command);
            }
        }
    }

    fn start_capture(&mut self, person: String, source: SourceSpec) {
        use facelab::capture::cascade::{obtain_face_cascade, Cascade};
        use facelab::capture::session::CaptureSettings;
        let cascade = match obtain_face_cascade(None, &self.ws.models_dir())
            .and_then(|p| Cascade::load(&p))
        {
            Ok(c) => c,
            Err(e) => {
                let _ = self.tx.send(Msg::Capture(jobs::CaptureEvent::Finished(Err(
                    e.to_string()
                ))));
                return;
            }
        };
        let job = jobs::spawn_capture(
            self.ws.facedata_dir(),
            CaptureSettings::for_source(&person, &source),
            source,
            cascade,
        );
        self.capture = Some(job.control);
        forward(job.events, self.tx.clone(), Msg::Capture);
    }

    fn start_training(&mut self, path: &Path) {
        let job = jobs::spawn_training(
            self.ws.clone(),
            path.to_owned(),
            self.weights.clone(),
            self.memory_limit,
        );
        self.job = Some(job.cancel);
        forward(job.events, self.tx.clone(), Msg::Train);
    }
}

/// Moves every value from `rx` into the UI channel as a message.
fn forward<T: Send + 'static>(rx: Receiver<T>, tx: Sender<Msg>, wrap: fn(T) -> Msg) {
    std::thread::spawn(move || {
        for value in rx {
            if tx.send(wrap(value)).is_err() {
                return;
            }
        }
    });
}

/// Measures what the TUI costs: the first frame with `runs` runs in the store (open, load,
/// draw), and each key's update and redraw. Returns (first frame ms, median key ms, worst key ms).
pub fn bench(runs: usize, keys: usize) -> anyhow::Result<(f64, f64, f64)> {
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    let dir = tempfile::tempdir()?;
    let ws = Workspace::new(dir.path());
    facelab::store::fixtures::fill_with_runs(&open_store(&ws)?, runs)?;
    let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
    let mut image = ImageView::new(Picker::halfblocks());

    let start = Instant::now();
    let store = open_store(&ws)?;
    let mut app = App::default();
    app.update(Msg::RunsLoaded(store.runs()?));
    terminal.draw(|f| view::render(f, &app, &mut image))?;
    let first_frame = start.elapsed().as_secs_f64() * 1000.0;

    let codes = [
        KeyCode::Char('j'),
        KeyCode::Char('j'),
        KeyCode::Char('k'),
        KeyCode::Char('s'),
        KeyCode::PageDown,
        KeyCode::Char(' '),
    ];
    let mut times: Vec<f64> = (0..keys)
        .map(|i| {
            let t = Instant::now();
            app.update(Msg::Key(KeyEvent::new(
                codes[i % codes.len()],
                KeyModifiers::NONE,
            )));
            terminal
                .draw(|f| view::render(f, &app, &mut image))
                .expect("test backend draws");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Ok((
        first_frame,
        times[times.len() / 2],
        *times.last().unwrap_or(&0.0),
    ))
}

/// The Recognize screen while frames flow: each frame event (a new 320x240 picture with two
/// boxed faces) is applied and drawn, then a key is applied and drawn. Returns the median and
/// worst milliseconds of a frame's update + redraw and of a key's.
pub fn bench_recognize_screen(frames: usize) -> anyhow::Result<[(f64, f64); 2]> {
    use facelab::jobs::RecognizeEvent;
    use facelab::recognize::{FaceResult, FrameResult};
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
    let mut image = ImageView::new(Picker::halfblocks());
    let mut app = App {
        screen: app::Screen::Recognize,
        ..App::default()
    };
    app.recognize.run = Some("abcd1234".into());
    app.recognize.running = true;
    let face = |track: u64, label: Option<&str>| FaceResult {
        rect: [40 * track as i32, 60, 120, 120],
        predicted: label.map(str::to_owned),
        label: label.map(str::to_owned),
        confidence: 0.9,
        unknown: label.is_none(),
        track,
        reused_features: false,
    };
    let (mut frame_ms, mut key_ms) = (Vec::new(), Vec::new());
    for n in 0..frames.max(1) {
        let shade = (n % 200) as u8;
        let preview = image::RgbImage::from_fn(320, 240, |x, y| {
            image::Rgb([shade.wrapping_add(x as u8), (y as u8).wrapping_mul(3), 90])
        });
        let event = RecognizeEvent::Frame {
            preview,
            result: FrameResult {
                frame: n as u64 + 1,
                source: "camera:0".into(),
                faces: vec![face(1, Some("Eric")), face(3, None)],
            },
            fps: 15.0,
        };
        let t = Instant::now();
        app.update(Msg::Recognize(event));
        terminal.draw(|f| view::render(f, &app, &mut image))?;
        frame_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        app.update(Msg::Key(KeyEvent::new(
            KeyCode::Char('j'),
            KeyModifiers::NONE,
        )));
        terminal.draw(|f| view::render(f, &app, &mut image))?;
        key_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let summary = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], *v.last().unwrap_or(&0.0))
    };
    Ok([summary(frame_ms), summary(key_ms)])
}
