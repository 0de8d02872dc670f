// edgehar_glove: DIY smart-glove firmware for an ESP32 (Arduino core 3.x) speaking edgehar
// wire v1 over USB serial and BLE at once. Wiring, libraries and flashing:
// docs/glove-firmware.md.
//
// This file is only the board layer: read the sensors every 10 ms, move bytes. Blocks,
// descriptor, status and commands are glove_core.c (portable, built and tested on a PC);
// the bytes are the edgehar_wire library's.
//
// Sensors: 5 flex sensors and a thumb force sensor (FSR) as voltage dividers on ADC1 pins,
// an MPU-6050 on I2C (+-16 g, +-2000 deg/s, 100 Hz with its 44 Hz low-pass).

#include <Arduino.h>
#include <NimBLEDevice.h>
#include <Wire.h>
#include <edgehar_wire.h>

#include "glove_core.h"

// ---- board configuration ------------------------------------------------------------
static const char DEVICE_NAME[] = "Glove";  // short: the 128-bit service UUID fills most of the advertisement
static const uint32_t SERIAL_BAUD = 921600;  // USB-UART bridge; the host's URL says the same baud
static const int FLEX_PINS[5] = {36, 39, 34, 35, 32};  // thumb, index, middle, ring, pinky (ADC1: usable with BLE on)
static const int PRESSURE_PIN = 33;
static const int SDA_PIN = 21, SCL_PIN = 22;
static const uint8_t MPU_ADDR = 0x68;  // AD0 low
static const uint32_t STATUS_EVERY_MS = 10000;
// Calibration (docs/glove-firmware.md): ADC readings with each finger flat and fully bent,
// and of the thumb sensor released and pressed hard. These are a starting point only.
static const int32_t FLEX_FLAT[5] = {1200, 1200, 1200, 1200, 1200};
static const int32_t FLEX_BENT[5] = {2600, 2600, 2600, 2600, 2600};
static const int32_t PRESSURE_RELEASED = 100, PRESSURE_PRESSED = 3500;

// ---- state ----------------------------------------------------------------------------
static glove_core glove;
static edgehar_rx serial_rx;  // one command decoder per link: their bytes must not mix
static edgehar_rx ble_rx;     // fed only from the BLE write callback
static NimBLECharacteristic *data_char;
static volatile bool ble_subscribed;
static volatile uint16_t ble_payload = 20;  // ATT MTU - 3 of the current connection
// Set by BLE callbacks (NimBLE's task), handled in loop(): glove_core is not shared across tasks.
static volatile bool want_descriptor, want_status, want_block_size;
static bool imu_ok;
static uint32_t next_us, last_status_ms;
static char device_id[13];  // the chip's MAC as 12 hex digits: tells two gloves apart

// ---- links ----------------------------------------------------------------------------
// Every frame goes to USB serial and, while a central listens, to BLE: split into
// notifications of at most ble_payload bytes (a sample block fits one; the ~280-byte
// descriptor spans several, which the host reassembles).
static void emit(void *, const uint8_t *frame, size_t n) {
  Serial.write(frame, n);
  if (!ble_subscribed) return;
  for (size_t at = 0; at < n;) {
    size_t part = n - at < ble_payload ? n - at : ble_payload;
    if (!data_char->notify(frame + at, part)) {
      glove.flags |= EDGEHAR_FLAG_OVERFLOW;  // the stack's queue is full: the host resyncs
      return;
    }
    at += part;
  }
}

class ServerCallbacks : public NimBLEServerCallbacks {
  void onDisconnect(NimBLEServer *, NimBLEConnInfo &, int) override {
    ble_subscribed = false;
    NimBLEDevice::startAdvertising();
  }
  void onMTUChange(uint16_t mtu, NimBLEConnInfo &) override {
    ble_payload = mtu - 3;
    want_block_size = true;
  }
};

class DataCallbacks : public NimBLECharacteristicCallbacks {
  void onSubscribe(NimBLECharacteristic *, NimBLEConnInfo &, uint16_t sub_value) override {
    ble_subscribed = (sub_value & 1) != 0;  // notifications on
    if (ble_subscribed) want_descriptor = true;  // the protocol: a descriptor when notifications start
  }
};

class CommandCallbacks : public NimBLECharacteristicCallbacks {
  void onWrite(NimBLECharacteristic *c, NimBLEConnInfo &) override {
    NimBLEAttValue v = c->getValue();
    for (size_t i = 0; i < v.length(); i++) {
      uint8_t cmd = edgehar_rx_byte(&ble_rx, v.data()[i]);
      if (cmd == EDGEHAR_SEND_DESCRIPTOR) want_descriptor = true;
      if (cmd == EDGEHAR_SEND_STATUS) want_status = true;
    }
  }
};

static void start_ble() {
  NimBLEDevice::init(DEVICE_NAME);
  NimBLEDevice::setMTU(247);  // 244-byte notifications: 9 glove samples per block
  NimBLEServer *server = NimBLEDevice::createServer();
  server->setCallbacks(new ServerCallbacks());
  NimBLEService *service = server->createService(EDGEHAR_SERVICE_UUID);
  data_char = service->createCharacteristic(EDGEHAR_DATA_CHAR_UUID, NIMBLE_PROPERTY::NOTIFY);
  data_char->setCallbacks(new DataCallbacks());
  NimBLECharacteristic *command =
      service->createCharacteristic(EDGEHAR_COMMAND_CHAR_UUID, NIMBLE_PROPERTY::WRITE | NIMBLE_PROPERTY::WRITE_NR);
  command->setCallbacks(new CommandCallbacks());
  service->start();
  NimBLEAdvertising *adv = NimBLEDevice::getAdvertising();
  adv->setName(DEVICE_NAME);
  adv->addServiceUUID(EDGEHAR_SERVICE_UUID);  // the host scans for it
  adv->start();
}

// ---- sensors --------------------------------------------------------------------------
static bool mpu_write(uint8_t reg, uint8_t value) {
  Wire.beginTransmission(MPU_ADDR);
  Wire.write(reg);
  Wire.write(value);
  return Wire.endTransmission() == 0;
}

static bool mpu_init() {
  return mpu_write(0x6B, 0x01)      // PWR_MGMT_1: awake, clock from the X gyro PLL
         && mpu_write(0x1A, 0x03)   // CONFIG: DLPF 44 Hz (gyro rate 1 kHz)
         && mpu_write(0x19, 9)      // SMPLRT_DIV: 1 kHz / (1 + 9) = 100 Hz
         && mpu_write(0x1B, 0x18)   // GYRO_CONFIG: +-2000 deg/s, 16.4 LSB per deg/s
         && mpu_write(0x1C, 0x18);  // ACCEL_CONFIG: +-16 g, 2048 LSB per g
}

// acc xyz, gyro xyz as the chip's own int16 (glove_core's descriptor has its scales).
static bool mpu_read(int16_t out[6]) {
  uint8_t b[14];
  Wire.beginTransmission(MPU_ADDR);
  Wire.write(0x3B);  // ACCEL_XOUT_H .. GYRO_ZOUT_L, temperature in between
  if (Wire.endTransmission(false) != 0 || Wire.requestFrom(MPU_ADDR, (uint8_t)14) != 14) return false;
  for (int i = 0; i < 14; i++) b[i] = Wire.read();
  for (int i = 0; i < 3; i++) {
    out[i] = (int16_t)((b[2 * i] << 8) | b[2 * i + 1]);
    out[3 + i] = (int16_t)((b[8 + 2 * i] << 8) | b[9 + 2 * i]);
  }
  return true;
}

static void read_sample(int16_t v[GLOVE_CHANNELS]) {
  for (int i = 0; i < 5; i++) v[i] = glove_fraction(analogRead(FLEX_PINS[i]), FLEX_FLAT[i], FLEX_BENT[i]);
  v[11] = glove_fraction(analogRead(PRESSURE_PIN), PRESSURE_RELEASED, PRESSURE_PRESSED);
  imu_ok = imu_ok && mpu_read(&v[5]);
  if (!imu_ok) {
    for (int i = 5; i < 11; i++) v[i] = 0;  // the protocol: a faulty sensor's channels read 0
    glove.flags |= EDGEHAR_FLAG_SENSOR_FAULT;
  } else {
    glove.flags &= ~EDGEHAR_FLAG_SENSOR_FAULT;
  }
}

// ---- main -----------------------------------------------------------------------------
void setup() {
  Serial.begin(SERIAL_BAUD);
  analogReadResolution(12);
  Wire.begin(SDA_PIN, SCL_PIN, 400000);
  imu_ok = mpu_init();
  edgehar_rx_init(&serial_rx);
  edgehar_rx_init(&ble_rx);
  glove_init(&glove, emit, nullptr, edgehar_samples_per_block(GLOVE_CHANNELS, EDGEHAR_BLE_PAYLOAD), 0);
  snprintf(device_id, sizeof device_id, "%012llX", (unsigned long long)ESP.getEfuseMac());
  glove.descriptor.device_id = device_id;
  start_ble();
  glove_boot(&glove);
  next_us = micros();
  last_status_ms = millis();
}

void loop() {
  while (Serial.available() > 0) glove_command(&glove, edgehar_rx_byte(&serial_rx, (uint8_t)Serial.read()));
  if (want_descriptor) { want_descriptor = false; glove_send_descriptor(&glove); }
  if (want_status) { want_status = false; glove_send_status(&glove); }
  if (want_block_size) {
    want_block_size = false;
    uint8_t n = edgehar_samples_per_block(GLOVE_CHANNELS, ble_payload);
    glove_set_block_samples(&glove, n ? n : 1);  // at a tiny MTU a block spans notifications
  }
  uint32_t late = micros() - next_us;  // unsigned: micros() wraps every 71.6 min, as t_device_us does
  if (late < 0x80000000u) {            // the tick is due
    if (late >= GLOVE_PERIOD_US) {     // BLE or I2C held us up past a whole tick: skip the missed ones
      next_us += late / GLOVE_PERIOD_US * GLOVE_PERIOD_US;  // (glove_sample sees the gap: new block, OVERFLOW)
    }
    int16_t v[GLOVE_CHANNELS];
    read_sample(v);
    glove_sample(&glove, next_us, v);  // stamped with its tick: the host assumes even spacing
    next_us += GLOVE_PERIOD_US;
  }
  if (millis() - last_status_ms >= STATUS_EVERY_MS) {
    last_status_ms = millis();
    if (!imu_ok) imu_ok = mpu_init();  // a loose I2C wire: try again every status
    glove_send_status(&glove);         // battery unknown (EDGEHAR_BATTERY_UNKNOWN) unless you wire a divider
  }
}
