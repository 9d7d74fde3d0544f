#!/usr/bin/env bash
# Regenerate docs/screenshots: the station window at every level (and at 1280x720), its help and
# look back, the review window, the HTML report and every page of the PDF report, as a user sees
# them, under a virtual X server.
#
#   apt-get install -y xvfb xdotool imagemagick poppler-utils   # besides the README's packages
#   make setup && docs/screenshots.sh
#
# Everything runs on throwaway data (a temporary data folder per shot); nothing of yours is read.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in Xvfb xdotool import pdftoppm; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing: apt-get install -y xvfb xdotool imagemagick poppler-utils" >&2
        exit 2
    }
done
OUT=docs/screenshots
STATION=.venv/bin/station
PY=.venv/bin/python
WORK=$(mktemp -d /tmp/station-shots.XXXXXX)
export DISPLAY=:${SHOTS_DISPLAY:-96}
XVFB_PID=""
APP_PID=""
cleanup() {
    [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
    [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

screen() {  # WxH: a fresh virtual screen of that size
    [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null && wait "$XVFB_PID" 2>/dev/null || true
    Xvfb "$DISPLAY" -screen 0 "${1}x24" >/dev/null 2>&1 &
    XVFB_PID=$!
    sleep 1
}

login() {  # wait for the login dialog, log in as the demo engineer
    xdotool search --sync --name "log in" >/dev/null
    sleep 1
    xdotool type --delay 30 demo && xdotool key Tab && xdotool type --delay 30 demo
    xdotool key Return
}

station() {  # NAME WxH LEVEL [KEY...]: the station window after a few phones, then the keys
    local name=$1 size=$2 level=$3
    shift 3
    screen "$size"
    STATION_DATA_DIR="$WORK/$name" "$STATION" run --demo --level "$level" >"$WORK/$name.log" 2>&1 &
    APP_PID=$!
    if [ "$name" = login ]; then
        xdotool search --sync --name "log in" >/dev/null
        sleep 1
        xdotool type --delay 30 demo && xdotool key Tab && xdotool type --delay 30 wrong
        xdotool key Return
        sleep 1
    else
        login
        xdotool search --sync --name "Inspection Station" >/dev/null
        sleep 12  # the model loads, the first phones arrive
        for key in "$@"; do
            xdotool key "$key"
            sleep 1.5
        done
    fi
    import -window root -quality 88 "$OUT/$name.jpg"  # a camera image: JPEG is a tenth of PNG
    kill "$APP_PID" && wait "$APP_PID" 2>/dev/null || true
    APP_PID=""
    echo "$OUT/$name.jpg"
}

station login 1920x1080 human_only
station human_only 1920x1080 human_only space 2
station shadow 1920x1080 shadow space
station assist 1920x1080 assist space h
station partial 1920x1080 partial
station full 1920x1080 full
station assist-1280x720 1280x720 assist space
station help 1920x1080 assist F1
station look-back 1920x1080 shadow space 2 space space p

# The QA lead's side: a simulated shift, the review window on it, the reports of it.
export STATION_DATA_DIR="$WORK/review"
"$STATION" simulate --items 600 --level shadow >/dev/null
printf 'eng-secret-1\neng-secret-1\n' | "$STATION" user add eng --role engineer >/dev/null
printf 'eng-secret-1\nqa-secret-1\nqa-secret-1\n' | "$STATION" user add qa --role qa_lead --user eng >/dev/null
screen 1920x1080
echo qa-secret-1 | "$STATION" review --user qa --station sim >"$WORK/review.log" 2>&1 &
APP_PID=$!
xdotool search --sync --name "review" >/dev/null
sleep 8
import -window root -quality 88 "$OUT/review.jpg"
echo "$OUT/review.jpg"
kill "$APP_PID" && wait "$APP_PID" 2>/dev/null || true
APP_PID=""

"$STATION" report --station sim --format html --out "$WORK/report.html" >/dev/null
"$STATION" report --station sim --format pdf --out "$WORK/report.pdf" >/dev/null
rm -f "$OUT"/report-pdf-*.png "$OUT"/report-html-*.png
pdftoppm -r 60 -png "$WORK/report.pdf" "$OUT/report-pdf"
# The HTML as a screen shows it (screen style, 1240 px wide), through the same CSS engine.
"$PY" - "$WORK/report.html" "$WORK/report-screen.pdf" <<'EOF'
import sys
import warnings

warnings.simplefilter("ignore")
import weasyprint

page = weasyprint.CSS(string="@page { size: 1240px 1754px; margin: 0 }")
html = weasyprint.HTML(filename=sys.argv[1], media_type="screen")
html.write_pdf(sys.argv[2], stylesheets=[page])
EOF
pdftoppm -r 96 -png -f 1 -l 2 "$WORK/report-screen.pdf" "$OUT/report-html"
ls "$OUT"/report-*.png
