// Command report turns the raw runs of bench/run.sh into warden's benchmark
// report: a Markdown file (headline, results table, targets), a JSON file
// (one object per case) and the data files bench/plot.gp draws.
//
// Its input is one JSON line per load generator run, written by run.sh:
//
//	{"case":"warden","mode":"closed","round":1,"rate":0,"conns":32,"hz":100,
//	 "window_s":3.75,"cpu_ticks":371,"cpu_user_ticks":180,"cpu_sys_ticks":191,
//	 "other_ticks":370,"busy_ticks":748,"lo_packets":901234,
//	 "decision_lines":250110,"hwm_kib":24312,"result":{...bench/loadgen -json...}}
//
// Over window_s seconds of wall time inside the measured part of the run,
// cpu_ticks are the user+system clock ticks of the processes under test
// (also apart), other_ticks those of the load generator and the app,
// busy_ticks those of the whole machine (all CPUs, steal included): what is
// left is other activity on the machine; lo_packets the packets the machine
// sent on loopback. decision_lines is the lines the whole run added to a
// warden case's decision log (null for others), to match the load
// generator's sent. hwm_kib is the summed peak RSS (VmHWM) of the processes
// under test at the end of the run.
//
// Beside them: -syscalls (strace -c tables of a separate run per case),
// -fastpath (GET /fastpath answers) and -failed (cases run.sh dropped, with
// why), all optional.
//
// With -line it reads one such line on stdin and prints it as one line of
// text, for run.sh's progress output; with -disturbed it says by its exit
// status whether the run should be measured again.
//
// It only reads what run.sh recorded: it measures nothing itself.
package main
