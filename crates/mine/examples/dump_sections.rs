//! Prints how a Markdown survey splits into sections: each kept section (kind, heading,
//! characters, citations) and each dropped unit with its reason. For inspecting the section
//! rules on a survey: `cargo run -p rubricmill-mine --example dump_sections -- survey.md`
//! (`DUMP_REFERENCE=12` also prints the reference-list entries keyed "12").

use rubricmill_mine::sections::{SectionOptions, parse_markdown_survey};

fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
                continue;
            }
        };
        let p = parse_markdown_survey(&text, &SectionOptions::default());
        println!("== {path}: {} references", p.references.len());
        for s in &p.sections {
            println!(
                "KEEP [{}] {} ({} chars, {} cited)",
                s.kind.as_str(),
                s.heading,
                s.text.chars().count(),
                s.citations.len()
            );
        }
        if let Ok(key) = std::env::var("DUMP_REFERENCE") {
            for r in p.references.iter().filter(|r| r.key == key) {
                println!("REF {r:?}");
            }
        }
        for d in &p.dropped {
            let part = if d.partial { " (part)" } else { "" };
            println!("DROP{part} {} :: {}", d.heading, d.reason);
        }
    }
    if failed {
        std::process::exit(1);
    }
}
