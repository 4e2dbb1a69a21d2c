# bench/plot.gp: the picture of a bench/run.sh report, from the data files
# bench/report writes. Called as
#   gnuplot -e "dir='DIR'; out='FILE.png'; ltitle='...'; newconn=1" bench/plot.gp
# Top: latency percentiles per case (log scale), titled ltitle. Middle:
# maximum throughput, keep-alive. Bottom, when newconn is 1: throughput
# with a new connection and TLS handshake per request. Bars are medians
# over the rounds; error bars span min to max.

set terminal pngcairo size 1400,(newconn ? 1300 : 900) font ",11"
set output out
set multiplot layout (newconn ? 3 : 2),1 margins 0.07,0.98,0.08,0.95 spacing 0,(newconn ? 0.09 : 0.12)

set style data histogram
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics nomirror rotate by -20 scale 0
set key top left horizontal

set title ltitle
set ylabel "ms (log scale)"
set logscale y
set style histogram clustered gap 1
plot dir.'/latency.dat' using 2:xtic(1) title "p50", \
     '' using 3 title "p90", \
     '' using 4 title "p99", \
     '' using 5 title "p99.9"

unset logscale y
set yrange [0:*]
set style histogram errorbars gap 1 lw 1.5
set key top right
set title "Maximum throughput, keep-alive (closed loop)"
set ylabel "requests/s"
plot dir.'/rps.dat' using 2:3:4:xtic(1) title "median, min–max" lc rgb "#3b6ea8", \
     '' using 0:2:(sprintf("%.1fk", $2/1000)) with labels offset 0,1.2 notitle

if (newconn) {
set title "Throughput, new connection and TLS handshake per request (closed loop)"
plot dir.'/rps.dat' using 5:6:7:xtic(1) title "median, min–max" lc rgb "#c0733a", \
     '' using 0:5:(sprintf("%.1fk", $5/1000)) with labels offset 0,1.2 notitle
}

unset multiplot
