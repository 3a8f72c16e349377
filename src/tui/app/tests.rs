//! The update function by value: keys and worker results in, state and commands out.

use facelab::capture::session::CaptureTally;
use facelab::store::fixtures::finished_run as run;
use facelab::store::RunColumn;

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
    assert_eq!(app.runs.sort, RunColumn::Id);
    assert_eq!(app.selected_run().unwrap().id, "aaaa1111");
    for _ in 0..3 {
        app.update(key(KeyCode::Char('s')));
    }
    assert_eq!(app.runs.sort, RunColumn::ValAccuracy);
    let order: Vec<_> = app.runs.visible().iter().map(|r| r.id.clone()).collect();
    assert_eq!(order, ["bbbb2222", "cccc3333", "aaaa1111"]);
}

#[test]
fn filter_narrows_as_typed_and_esc_clears_it() {
    let mut app = app_with_runs();
    app.update(key(KeyCode::Char('/')));
    for c in "recom".chars() {
        app.update(key(KeyCode::Char(c)));
    }
    assert_eq!(app.runs.visible().len(), 1);
    app.update(key(KeyCode::Enter));
    assert_eq!(app.runs.filter, "recom");
    app.update(key(KeyCode::Esc));
    assert_eq!(app.runs.visible().len(), 3);
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
        open_set: None,
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
    // The field shows the run's tags; typing replaces them.
    assert_eq!(app.prompt.as_ref().unwrap().input.value(), "baseline");
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
    assert_eq!(app.update(key(KeyCode::Tab)), vec![Command::LoadSweeps]);
    assert_eq!(app.screen, Screen::Sweeps);
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
    assert_eq!(app.screen, Screen::Recognize);
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
        app.experiments.job.as_ref().unwrap().outcome,
        Some(Err("training cancelled".into()))
    );
}

#[test]
fn e_edits_the_selected_experiment_and_the_outcome_is_the_status() {
    let mut app = app_with_runs();
    app.update(key(KeyCode::Tab));
    app.update(Msg::ExperimentsListed(vec![
        "experiments/a.yaml".into(),
        "experiments/b.yaml".into(),
    ]));
    app.update(key(KeyCode::Down));
    assert_eq!(
        app.update(key(KeyCode::Char('e'))),
        vec![Command::EditFile("experiments/b.yaml".into())]
    );
    let after = app.update(Msg::Edited(
        "experiments/b.yaml".into(),
        Err("experiments/b.yaml:3: head.hidden: bad".into()),
    ));
    assert_eq!(after, vec![Command::ListExperiments]);
    assert_eq!(app.status, "experiments/b.yaml:3: head.hidden: bad");
    app.update(Msg::Edited("experiments/b.yaml".into(), Ok(())));
    assert_eq!(app.status, "experiments/b.yaml saved; it checks out");
}

#[test]
fn capital_r_edits_a_runs_config_and_trains_it_when_it_checks_out() {
    let mut app = app_with_runs();
    // The newest run is selected.
    assert_eq!(
        app.update(key(KeyCode::Char('R'))),
        vec![Command::EditRerun("bbbb2222".into())]
    );
    let file = PathBuf::from("models/reruns/bbbb2222.yaml");
    assert!(app
        .update(Msg::RerunEdited(file.clone(), Err("bad: it".into())))
        .is_empty());
    assert_eq!(app.status, "bad: it");
    assert_eq!(app.screen, Screen::Runs);
    assert_eq!(
        app.update(Msg::RerunEdited(file.clone(), Ok(()))),
        vec![Command::StartTraining(file.clone())]
    );
    assert_eq!(app.screen, Screen::Experiments);
    // While that run goes, another re-run is refused.
    assert!(app.update(Msg::RerunEdited(file, Ok(()))).is_empty());
    assert!(app.status.contains("already going"), "{}", app.status);
}

#[test]
fn reloading_keeps_the_selected_run() {
    let mut app = app_with_runs();
    app.update(key(KeyCode::Char('j')));
    let mut runs = app.runs.all.clone();
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
            source: SourceSpec::Camera(0)
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
        tally: CaptureTally {
            frames: 3,
            saved: 1,
            no_face: 2,
            ..CaptureTally::default()
        },
        target: Some(15),
    }));
    assert_eq!((app.capture.tally.saved, app.capture.frames), (1, 1));
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

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

#[test]
fn typing_a_source_replaces_the_one_shown_and_a_bad_one_is_refused() {
    let mut app = app_with_runs();
    app.screen = Screen::Capture;
    app.update(key(KeyCode::Char('o')));
    type_text(&mut app, "dir:/tmp/photos");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.capture.source, SourceSpec::Folder("/tmp/photos".into()));

    app.update(key(KeyCode::Char('o')));
    app.update(key(KeyCode::End));
    type_text(&mut app, "x");
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.capture.source,
        SourceSpec::Folder("/tmp/photosx".into()),
        "arrows edit the value shown"
    );

    app.update(key(KeyCode::Char('o')));
    type_text(&mut app, "webcam");
    app.update(key(KeyCode::Enter));
    assert!(app.status.contains("\"webcam\""), "{}", app.status);
    assert_eq!(
        app.capture.source,
        SourceSpec::Folder("/tmp/photosx".into())
    );
}

#[test]
fn esc_drops_a_typed_value() {
    let mut app = app_with_runs();
    app.screen = Screen::Capture;
    app.update(key(KeyCode::Char('n')));
    type_text(&mut app, "eric");
    app.update(key(KeyCode::Esc));
    assert!(app.prompt.is_none());
    assert_eq!(app.capture.person, "");
    assert_eq!(app.screen, Screen::Capture);
}

#[test]
fn each_screen_goes_back_to_runs_on_esc() {
    for screen in [
        Screen::Detail,
        Screen::Compare,
        Screen::Experiments,
        Screen::Predict,
        Screen::Capture,
    ] {
        let mut app = app_with_runs();
        app.screen = screen;
        app.update(key(KeyCode::Esc));
        assert_eq!(app.screen, Screen::Runs, "{screen:?}");
    }
}

#[test]
fn enter_on_a_sweep_file_starts_it_and_shows_it_filling_in() {
    use facelab::jobs::SweepEvent;
    let mut app = App {
        screen: Screen::Experiments,
        ..App::default()
    };
    app.update(Msg::ExperimentsListed(vec![
        "experiments/seed.yaml".into(),
        "experiments/sweeps/s.yaml".into(),
    ]));
    app.update(key(KeyCode::Down));
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![
            Command::StartSweep("experiments/sweeps/s.yaml".into()),
            Command::LoadSweeps
        ]
    );
    assert_eq!(app.screen, Screen::Sweeps);
    assert!(app.sweeps.running());
    app.update(Msg::Sweep(SweepEvent::Started {
        sweep_id: "abcd1234".into(),
        total: 4,
        done: 1,
    }));
    assert_eq!(
        app.update(key(KeyCode::Char('x'))),
        vec![Command::CancelSweep]
    );
    // A plain experiment file still trains.
    app.screen = Screen::Experiments;
    app.update(key(KeyCode::Up));
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Command::StartTraining("experiments/seed.yaml".into())]
    );
}

#[test]
fn recognize_starts_with_the_selected_run_pauses_saves_and_esc_stops_before_leaving() {
    let mut app = app_with_runs();
    for _ in 0..5 {
        app.update(key(KeyCode::Tab));
    }
    assert_eq!(app.screen, Screen::Recognize);
    assert_eq!(app.recognize.run.as_deref(), Some("bbbb2222"));
    app.update(key(KeyCode::Char('o')));
    for c in "dir:frames".chars() {
        app.update(key(KeyCode::Char(c)));
    }
    let typed = app.update(key(KeyCode::Backspace));
    assert!(typed.is_empty());
    app.update(key(KeyCode::Char('s')));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.recognize.source.to_string(), "dir:frames");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Command::StartRecognize {
            run: "bbbb2222".into(),
            source: "dir:frames".parse().unwrap(),
        }]
    );
    assert_eq!(
        app.update(key(KeyCode::Char(' '))),
        vec![Command::Recognize(RecognizeControl::Pause)]
    );
    assert!(app.recognize.paused);
    assert_eq!(
        app.update(key(KeyCode::Char('s'))),
        vec![Command::Recognize(RecognizeControl::Save)]
    );
    assert_eq!(
        app.update(key(KeyCode::Esc)),
        vec![Command::Recognize(RecognizeControl::Stop)]
    );
    assert_eq!(app.screen, Screen::Recognize, "Esc stops the stream first");
    app.update(Msg::Recognize(RecognizeEvent::Finished(Ok(42))));
    assert!(!app.recognize.running);
    assert!(app.recognize.last.contains("42 frames"));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Runs);
}

#[test]
fn recognize_without_a_run_says_how_to_pick_one() {
    let mut app = App {
        screen: Screen::Recognize,
        ..App::default()
    };
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(app.status.contains("Runs screen"), "{}", app.status);
    assert!(!app.recognize.running);
}
