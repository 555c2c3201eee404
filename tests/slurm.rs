//! The repository's own sbatch file on a real Slurm: this test installs
//! Slurm and MUNGE from Debian's packages if they are absent, starts a
//! one-node cluster whose state, sockets, logs and config all live in a
//! temporary folder, submits `docs/cluster/cifar.sbatch` as a 4-task array
//! plus its report job on a tiny synthetic grid, and checks that every job
//! succeeded and that the report equals a single-process run of the same
//! grid. Every daemon it started is stopped by PID, also when it fails.
//!
//! Where it cannot run (not root, no apt-get) it says why and passes —
//! unless `CI` is set, where it must run.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, results, run_ok, strip_timings, tmp};

const PACKAGES: [&str; 4] = ["slurmctld", "slurmd", "slurm-client", "munge"];
const PROGRAMS: [&str; 7] = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged", "mungekey"];

fn on_path(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// Install the packages if a program is missing; `Err(why)` when that is not possible here.
fn ensure_slurm() -> Result<(), String> {
    if PROGRAMS.iter().all(|p| on_path(p)) {
        return Ok(());
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("Slurm is not installed and this test is not root, so it cannot apt-get it".into());
    }
    if !on_path("apt-get") {
        return Err("Slurm is not installed and there is no apt-get to install it".into());
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine may have no package lists yet.
    if !install() {
        let updated = Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success());
        if !updated || !install() {
            return Err(format!("apt-get could not install {}", PACKAGES.join(" ")));
        }
    }
    Ok(())
}

/// A one-node Slurm cluster under `dir`, torn down (jobs cancelled, every
/// daemon killed by PID) when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let munge = dir.join("munge");
        for d in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        chmod(&munge, 0o755); // munged refuses a socket folder others may write to
        let key = dir.join("munge.key");
        run_ok(Command::new("mungekey").arg("--create").arg(format!("--keyfile={}", key.display())));
        chmod(&key, 0o600);
        let mut cluster = Cluster { dir: dir.to_path_buf(), conf: dir.join("slurm.conf"), daemons: vec![] };
        let socket = munge.join("munge.sock");
        cluster.spawn(
            "munged",
            Command::new("munged").arg("--foreground").arg(format!("--socket={}", socket.display())).args([
                format!("--key-file={}", key.display()),
                format!("--pid-file={}", munge.join("munged.pid").display()),
                format!("--seed-file={}", munge.join("seed").display()),
                format!("--log-file={}", dir.join("log/munged.log").display()),
            ]),
        );
        cluster.wait_for("munged's socket", || socket.exists());
        std::fs::write(&cluster.conf, config(dir, &socket)).unwrap();
        let conf = cluster.conf.clone();
        cluster.spawn("slurmctld", Command::new("slurmctld").args(["-D", "-i"]).env("SLURM_CONF", &conf));
        cluster.spawn("slurmd", Command::new("slurmd").arg("-D").env("SLURM_CONF", &conf));
        let sinfo = || {
            let mut cmd = Command::new("sinfo");
            cmd.env("SLURM_CONF", &conf).args(["-h", "-o", "%t"]);
            cmd.output().is_ok_and(|o| o.stdout.starts_with(b"idle"))
        };
        cluster.wait_for("the node to be idle", sinfo);
        cluster
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.join(format!("log/{name}.out"))).unwrap();
        let child = cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        self.daemons.push((name, child));
    }

    /// A Slurm client command talking to this cluster.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    fn wait_for(&mut self, what: &str, ready: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !ready() {
            for (name, child) in &mut self.daemons {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{name} exited ({status}) while waiting for {what}; logs in {}", self.dir.display());
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no {what} after 60 s; logs in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Completion records of finished jobs (`JobCompType=jobcomp/filetxt`), one per line.
    fn completed(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("log/jobcomp.txt")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.client("scancel").args(["--full", "--user=root"]).status();
        // Slurm daemons first, munged (which they authenticate through) last.
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let t0 = Instant::now();
            while child.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// slurm.conf of a one-node cluster: no systemd, no cgroups, no accounting
/// database; job completions logged to a file so each job's end state can
/// be checked.
fn config(dir: &Path, munge_socket: &Path) -> String {
    let node = String::from_utf8(Command::new("slurmd").arg("-C").output().unwrap().stdout).unwrap();
    let node = node.lines().next().expect("slurmd -C prints the node line").trim().to_string();
    let name = node.split_whitespace().next().unwrap().trim_start_matches("NodeName=").to_string();
    let d = dir.display();
    format!(
        "ClusterName=morphgrad-test\n\
         SlurmctldHost={name}(127.0.0.1)\n\
         SlurmctldPort={}\nSlurmdPort={}\n\
         SlurmUser=root\nSlurmdUser=root\n\
         AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={}\n\
         StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
         SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
         SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
         ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
         JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
         JobCompType=jobcomp/filetxt\nJobCompLoc={d}/log/jobcomp.txt\n\
         SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
         SchedulerParameters=batch_sched_delay=0\nMpiDefault=none\nReturnToService=2\nMinJobAge=600\n\
         {node} NodeAddr=127.0.0.1 State=UNKNOWN\n\
         PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
        free_port(),
        free_port(),
        munge_socket.display()
    )
}

/// The grid: two heads × two seeds of a tiny CIFAR net on synthetic images.
const GRID: &str = "--synthetic-train 600 --synthetic-test 100 --channels 4 --hidden 16 --epochs 2 \
                    --heads relu,sparse-morph --seeds 2 --ratios 0.8,0.9";

#[test]
fn the_sbatch_file_runs_a_sharded_grid_and_its_report_on_a_real_slurm() {
    if let Err(why) = ensure_slurm() {
        return common::skip(&why);
    }
    let t0 = Instant::now();
    let dir = tmp("slurm");
    let cluster = Cluster::start(&dir);
    let out = dir.join("grid");
    let text = run_ok(
        Command::new("bash")
            .arg("docs/cluster/cifar.sbatch")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SLURM_CONF", &cluster.conf)
            .env("MORPHGRAD", env!("CARGO_BIN_EXE_morphgrad"))
            .env("DATA", "")
            .env("OUT", &out)
            .env("SHARDS", "4")
            .env("ARGS", GRID)
            .env_remove("RAYON_NUM_THREADS")
            .env(
                "SBATCH_OPTS",
                format!("--partition=test --cpus-per-task=1 --mem=1G --output={}/slurm-%A_%a.out", dir.display()),
            )
            .stdin(Stdio::null()),
    );
    assert!(text.contains("submitted job array"), "{text}");
    // Four array tasks and the report job, each recorded when it ends.
    let limit = Duration::from_secs(120);
    while cluster.completed().len() < 5 {
        assert!(t0.elapsed() < limit, "jobs unfinished after {limit:?}: {:#?}", cluster.completed());
        std::thread::sleep(Duration::from_millis(200));
    }
    let jobs = cluster.completed();
    for job in &jobs {
        assert!(job.contains("JobState=COMPLETED") && job.contains("ExitCode=0:0"), "a job failed: {job}");
    }
    assert_eq!(jobs.iter().filter(|j| j.contains("ArrayTaskId=")).count(), 4, "{jobs:#?}");
    drop(cluster);

    // Each task trained its share with the one CPU Slurm gave it (SLURM_CPUS_PER_TASK), not
    // with the node's cores; one process with one thread per run gives the same numbers.
    let sharded = results(&out);
    for (_, h) in sharded["heads"].as_object().unwrap() {
        assert!(h["epochs"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).all(|e| e["threads"] == 1));
    }
    let single = dir.join("single");
    let mut cmd = bin();
    cmd.env("RAYON_NUM_THREADS", "1").args(["reproduce", "cifar"]).args(GRID.split_whitespace());
    run_ok(cmd.args(["--jobs", "2", "--out"]).arg(&single));
    assert_eq!(strip_timings(sharded), strip_timings(results(&single)));
    assert_eq!(
        std::fs::read_to_string(out.join("table.md")).unwrap(),
        std::fs::read_to_string(single.join("table.md")).unwrap()
    );
    eprintln!("Slurm test: {:.1} s", t0.elapsed().as_secs_f64());
    std::fs::remove_dir_all(dir).ok();
}
